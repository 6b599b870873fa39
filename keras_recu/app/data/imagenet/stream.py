"""`StreamBatches`: the streamed sets' batches, decoded and transformed while the model trains."""

from __future__ import annotations

import collections
import concurrent.futures
import math
import os
import re
import threading
import time
from typing import Callable, Iterator, Optional, Union

import numpy as np

from keras_recu.app.data.base import (
    CorruptDataError,
    DataUnavailableError,
    EpochBatches,
    remember_data_error,
)
from keras_recu.app.data.imagenet.decode import (
    corrupt_file,
    import_tensorflow,
    pil_eval_image,
    pil_train_image,
    tf_decoded,
    tf_transform_functions,
    vanished_file,
)
from keras_recu.app.data.imagenet.sources import FolderSource, TFDSSource
from keras_recu.app.data.imagenet.transform import EpochDraws, ImageNetTransform, normalize_pixels
from keras_recu.app.messages import first_line

__all__ = ["PIL_PREFETCH", "RECENT_BATCHES", "StreamBatches"]

# Batches the PIL decoder works on ahead of the one asked for.
PIL_PREFETCH = 2
# Recently served batches kept, so that Keras' peek at batch 0 costs no restart.
RECENT_BATCHES = 2


class StreamBatches(EpochBatches):
    """Batches of a `FolderSource` or `TFDSSource`, decoded and transformed as they stream.

    `batches[i]` is `(images float32 (B, S, S, 3), labels int32 (B,))`,
    batch `i` of the current epoch (the last one may be partial). The train
    split (`augment=True`) takes the authors' train transform with the
    current epoch's `EpochDraws`; otherwise the eval transform. Indices read
    in order stream from a pipeline that works ahead (tf.data prefetch, or the
    PIL thread pool); any other index is served too, from a pipeline started
    there (correct, only slower). The last few batches are kept, so Keras'
    look at batch 0 before an epoch costs no restart. After the last batch of
    a shuffled epoch the next epoch's pipeline starts at once.

    Epoch accounting (`set_epoch`, `on_epoch_begin`/`end`) is `ImageBatches`'.

    `wait_seconds` adds up the time `__getitem__` waited for the pipeline
    (restarts included) over `batches_served` batches: where it grows by
    more than a small fraction of the training time, decoding is the
    bottleneck and more cores (`workers`) are needed.
    """

    def __init__(
        self,
        source: Union[FolderSource, TFDSSource],
        batch_size: int,
        transform: ImageNetTransform,
        *,
        augment: bool,
        shuffle: bool,
        seed: int = 0,
        decoder: str = "tf",
        workers: Optional[int] = None,
    ):
        super().__init__(seed=seed)
        if decoder not in ("tf", "pil"):
            raise ValueError(f"decoder must be 'tf' or 'pil' here, got {decoder!r}")
        if decoder == "pil" and isinstance(source, TFDSSource):
            raise ValueError("a tensorflow-datasets set is read by the tf decoder only")
        self.source = source
        self.batch_size = int(batch_size)
        self.transform = transform
        self.augment = bool(augment)
        self.shuffle = bool(shuffle)
        self.decoder = decoder
        self.decode_workers = workers  # PyDataset's own `workers` are Keras' reader threads
        self._lock = threading.RLock()
        self._stream: Optional[Iterator] = None
        self._stream_at: Optional[tuple] = None  # (epoch, index) the stream yields next
        self._stream_close: Callable[[], None] = lambda: None
        self._recent: collections.OrderedDict = collections.OrderedDict()
        self._draws: Optional[tuple] = None  # (epoch, EpochDraws)
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._tf_transforms = None
        self.wait_seconds = 0.0
        self.batches_served = 0

    @property
    def _varies_by_epoch(self) -> bool:
        return self.shuffle or self.augment

    def __len__(self) -> int:
        return math.ceil(len(self.source) / self.batch_size)

    def __getitem__(self, index: int):
        count = len(self)
        index = int(index)
        if not 0 <= index < count:
            raise IndexError(f"batch index {index} out of range: this split has {count} batches")
        with self._lock:
            self.note_served(index)
            epoch = self.epoch if self._varies_by_epoch else 0
            key = (epoch, index)
            if key in self._recent:
                return self._recent[key]
            start = time.perf_counter()
            try:
                if self._stream_at != key:
                    self._open(epoch, index)
                batch = self._next_batch(epoch, index)
            except (CorruptDataError, DataUnavailableError) as error:
                self._stream_at = None  # the pipeline stopped at the error: a later read starts anew
                raise remember_data_error(error)
            self.wait_seconds += time.perf_counter() - start
            self.batches_served += 1
            self._stream_at = (epoch, index + 1)
            self._recent[key] = batch
            while len(self._recent) > RECENT_BATCHES:
                self._recent.popitem(last=False)
            if index + 1 == count and self._varies_by_epoch:
                self._open(epoch + 1, 0)  # the next epoch works ahead from now
            return batch

    def close(self) -> None:
        """Stops the pipeline's work ahead and its threads."""
        with self._lock:
            self._stream_close()
            self._stream, self._stream_at = None, None
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # ---------------------------------------------------------------- internals

    def epoch_draws(self, epoch: int) -> Optional[EpochDraws]:
        """The random numbers of epoch `epoch`, None for an unshuffled eval split."""
        if not self._varies_by_epoch:
            return None
        if self._draws is None or self._draws[0] != epoch:
            shuffle = self.shuffle and not isinstance(self.source, TFDSSource)  # TFDS shuffles itself
            self._draws = (epoch, EpochDraws.draw(self.seed, epoch, len(self.source), self.transform, shuffle))
        return self._draws[1]

    def _next_batch(self, epoch: int, index: int):
        """The stream's next batch, batch `index` of `epoch`; a decoding failure names its file."""
        if self.decoder != "tf":
            return next(self._stream)  # the PIL decoder names the file itself
        tf = import_tensorflow()
        try:
            return next(self._stream)
        except tf.errors.OpError as error:
            raise self._tf_failure(tf, error, epoch, index) from None

    def _tf_failure(self, tf, error, epoch: int, index: int) -> Exception:
        """The data error behind tf.data's `error` in batch `index` of `epoch`: its file, found by decoding each.

        tf.data reports "jpeg::Uncompress failed" without the file; the batch's
        files are decoded again one by one, as the pipeline decodes them.
        """
        if isinstance(self.source, TFDSSource):
            return CorruptDataError(
                f"a record of {self.source.builder.name} in {self.source.builder.data_dir} ({self.source.split}, "
                f"batch {index}) cannot be decoded ({type(error).__name__}: {_tf_reason(error)}): the "
                "prepared copy is damaged. Delete that folder and prepare the data set again."
            )
        first = index * self.batch_size
        draws = self.epoch_draws(epoch)
        rows = range(first, min(first + self.batch_size, len(self.source)))
        for row in rows:
            path = self.source.paths[draws.order[row] if draws is not None else row]
            try:
                tf_decoded(tf, tf.io.read_file(path))
            except tf.errors.NotFoundError:
                return vanished_file(path)
            except tf.errors.OpError as failure:
                return corrupt_file(path, f"TensorFlow: {_tf_reason(failure)}")
        return error  # no single file fails: not a damaged file

    def _open(self, epoch: int, index: int) -> None:
        self._stream_close()
        start = index * self.batch_size
        draws = self.epoch_draws(epoch)
        if self.decoder == "tf":
            self._stream, self._stream_close = self._tf_stream(epoch, start, draws)
        else:
            self._stream, self._stream_close = self._pil_stream(start, draws)
        self._stream_at = (epoch, index)

    def _tf_stream(self, epoch: int, start: int, draws: Optional[EpochDraws]):
        tf = import_tensorflow()
        if self._tf_transforms is None:
            self._tf_transforms = tf_transform_functions(tf, self.transform)
        train_fn, eval_fn = self._tf_transforms
        if isinstance(self.source, TFDSSource):
            seed = None
            if self.shuffle:
                seed = int(np.random.SeedSequence(self.seed, spawn_key=(0x7FD5, epoch)).generate_state(1)[0] >> 1)
            pairs = self.source.dataset(tf, seed)
        else:
            order = draws.order if draws is not None else np.arange(len(self.source))
            pairs = tf.data.Dataset.from_tensor_slices((self.source.paths[order], self.source.labels[order]))
            pairs = pairs.map(lambda path, label: (tf.io.read_file(path), label))
        # Skipped before decoding: a restart mid-epoch reads but decodes nothing it skips.
        pairs = pairs.skip(start)
        if self.augment:
            rows = draws.rows(slice(start, None))
            dataset = tf.data.Dataset.zip((pairs, tf.data.Dataset.from_tensor_slices(rows)))
            dataset = dataset.map(
                lambda pair, row: (train_fn(pair[0], row), pair[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            )
        else:
            dataset = pairs.map(
                lambda encoded, label: (eval_fn(encoded), label),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            )
        dataset = dataset.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        if self.decode_workers is not None:
            options.threading.private_threadpool_size = self.decode_workers
        dataset = dataset.with_options(options)
        iterator = iter(dataset.as_numpy_iterator())
        return iterator, lambda: None

    def _pil_stream(self, start: int, draws: Optional[EpochDraws]):
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.decode_workers or os.cpu_count() or 1, thread_name_prefix="keras_recu_decode"
            )
        executor, source, transform = self._executor, self.source, self.transform
        order = draws.order if draws is not None else None
        count = len(source)
        pending: collections.deque = collections.deque()

        def submit(first: int):
            positions = range(first, min(first + self.batch_size, count))
            rows = [order[p] if order is not None else p for p in positions]
            if self.augment:
                futures = [
                    executor.submit(pil_train_image, source.paths[row], draws.rows(p), transform)
                    for p, row in zip(positions, rows)
                ]
            else:
                futures = [executor.submit(pil_eval_image, source.paths[row], transform) for row in rows]
            pending.append((futures, source.labels[np.array(rows, np.intp)]))

        def batches():
            first = start
            while first < count or pending:
                while first < count and len(pending) <= PIL_PREFETCH:
                    submit(first)
                    first += self.batch_size
                futures, labels = pending.popleft()
                pixels = np.stack([future.result() for future in futures])
                yield normalize_pixels(pixels, transform), labels

        def close():
            for futures, _ in pending:
                for future in futures:
                    future.cancel()
            pending.clear()

        return batches(), close

    def __repr__(self) -> str:
        return (
            f"StreamBatches({len(self.source)} images, batch_size={self.batch_size}, augment={self.augment}, "
            f"shuffle={self.shuffle}, decoder={self.decoder!r}, seed={self.seed}, epoch={self.epoch})"
        )


def _tf_reason(error) -> str:
    """A TensorFlow error's first line without the op's name and node: "jpeg::Uncompress failed. ..."."""
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", first_line(error))
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text)[:200]
