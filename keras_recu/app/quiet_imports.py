"""What TensorFlow prints by itself stays off the user's terminal: the `keras-recu` process's stderr is its own.

TensorFlow's C++ runtime (with absl, XLA, oneDNN, CUDA and the LCE converter)
writes its log to file descriptor 2 directly, several lines at start-up even
with `TF_CPP_MIN_LOG_LEVEL=3` (absl's "All log messages before
absl::InitializeLog()...", cuDNN/cuFFT/cuBLAS factories, oneDNN, cudart),
and more at the first conversion or XLA compilation. A user of `keras-recu`
would find every one-line message of the command under them. So the command:

* calls `quiet_environment()` before TensorFlow loads (the C++ log level it
  still honours; the user's own setting wins);
* imports Keras (and so TensorFlow) inside `captured()`, which sends file
  descriptor 2, and with it Python's `sys.stderr`, to a temporary file;
* runs the command inside `captured(python=False)`: descriptor 2 (what C++
  writes) still goes to the file, while `sys.stderr` (the command's own
  messages, warnings, tracebacks) writes to the terminal.

What was captured is thrown away, unless the block raises (TensorFlow failed
to import, or a bug): then it is printed first, since it may say why.
`keras-recu --verbose` shows everything as it comes (`show=True`: nothing is
captured or changed).

A process killed by a signal inside a block (TensorFlow aborting on a CPU it
was not built for) loses what was captured; run it again with --verbose.

>>> import os, sys
>>> with captured():
...     _ = os.write(2, b"I0000 tensorflow: hello\\n")
...     print("a warning", file=sys.stderr)
>>> try:
...     with captured():
...         _ = os.write(2, b"E0000 cannot load libcudart\\n")
...         raise ImportError("no TensorFlow")
... except ImportError:
...     pass
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Iterator

__all__ = ["captured", "quiet_environment", "user_stderr"]

#: TensorFlow's C++ log level for the command: 2 hides INFO and WARNING
#: lines it prints after start-up; errors still reach `captured`'s file.
TF_LOG_LEVEL = "2"


def quiet_environment() -> None:
    """Set, before TensorFlow loads, what keeps its C++ log quiet, where the user has not set it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)


@contextlib.contextmanager
def captured(show: bool = False, python: bool = True) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block; print what it got only if the block raises.

    With `python=True` Python's `sys.stderr` (which writes to descriptor 2)
    is captured as well: for imports, whose Python warnings are TensorFlow's
    too. With `python=False`, `sys.stderr` is pointed at the terminal for the
    block, so the command's own lines and tracebacks reach the user while
    native code's do not. `show=True` changes nothing.
    """
    if show:
        yield
        return
    _flush()
    terminal = os.dup(2)
    previous = sys.stderr
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        if not python and _descriptor(previous) == 2:
            # (A stream that is not descriptor 2, such as a test's capture, is left alone.)
            sys.stderr = _text_stream(terminal, previous)
        failed = False
        try:
            yield
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            failed = True
            raise
        finally:
            _flush()
            sys.stderr = previous
            _flush()  # what was written to the stream on descriptor 2 inside the block belongs to the file
            os.dup2(terminal, 2)
            os.close(terminal)
            if failed:
                _replay(sink)


def user_stderr():
    """What a child process should take as its stderr to reach the user: `sys.stderr`'s descriptor, or None (inherit).

    Inside `captured(python=False)`, descriptor 2 is the capture file while
    `sys.stderr` is the terminal; a child that is itself `keras-recu` quiets
    TensorFlow on its own.
    """
    return _descriptor(sys.stderr)


def _descriptor(stream):
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both an OSError and a ValueError
        return None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _text_stream(fd: int, like) -> io.TextIOWrapper:
    """A line-buffered text stream on a copy of `fd`, encoded like the stream it stands in for.

    It is never closed here: a logging handler created inside the block may
    hold it, and keeps writing to the terminal after the block.
    """
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(like, "encoding", None) or "utf-8",
                     errors="backslashreplace")


def _replay(sink) -> None:
    sink.flush()
    sink.seek(0)
    text = sink.read().decode("utf-8", "replace")
    if text:
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        sys.stderr.flush()
