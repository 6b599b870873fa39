"""ResNet-20 1w1a train steps on several engines, each in a worker process of its own.

An engine is one implementation on one framework:

* `keras-jax`, `keras-tensorflow`, `keras-torch`: `keras_recu.models.resnet20_1w1a`
  on that Keras backend (`model.train_on_batch`, jit_compile as Keras
  decides by default: XLA on JAX, not on TensorFlow or torch;
  `keras-tensorflow-xla` forces XLA on TensorFlow); `keras-jax-bf16`: the
  same on JAX under the `mixed_bfloat16` dtype policy;
* `authors-torch`: the authors' PyTorch model (`authors_resnet20_torch.py`)
  with their SGD step (zero_grad, forward, cross-entropy, backward, step);
  `authors-torch-compiled`: the same with the model under `torch.compile`
  (inductor, its default backend). A machine where inductor cannot compile
  (no C++ compiler on CPU) fails the engine at once, in one line.

All use SGD with momentum 0.9, PyTorch-style weight decay 5e-4, learning
rate 0.1, tau 0.85, cross-entropy on logits, and the same random batch of
32x32x3 images and labels, placed on the engine's device once. A step is
timed until its loss is on the host, so it includes the device's work.

A Keras backend is fixed per process, hence the workers. `Worker` starts
one (`python -m benchmarks.engines ENGINE --batch N`) and speaks a line protocol with
it: the worker builds its model, runs the first (compiling) step and a few
warm-up steps, prints `@@READY {facts}`, then answers each `STEPS n` on its
stdin with one untimed step and `n` timed ones, `@@TIMES [ms, ...]`. A
worker that cannot build or compile its engine prints `@@FAILED message`
(one line) and ends. Lines without `@@` are the worker's own output, passed
on to stderr. The facts hold `first_step_s` (the compiling step) and
`warmup_s` (the `warmup_steps` after it) apart from the timed steps.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks import harness
from benchmarks.launch import module_command, module_env
from benchmarks.timing import time_steps

#: The module a worker process runs (this one).
WORKER = "benchmarks.engines"
ENGINES = ("keras-jax", "keras-jax-bf16", "keras-tensorflow", "keras-tensorflow-xla", "keras-torch",
           "authors-torch", "authors-torch-compiled")
#: The Keras dtype policy of an engine; the others run in float32.
ENGINE_POLICIES = {"keras-jax-bf16": "mixed_bfloat16"}
SHAPE, CLASSES = (32, 32, 3), 10


class EngineUnavailable(RuntimeError):
    """The engine cannot run on this machine (say, torch.compile without a C++ compiler); the message says why."""


def _batch(batch: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *SHAPE), dtype=np.float32)
    return x, rng.integers(0, CLASSES, size=(batch,)).astype(np.int32)


def keras_stepper(engine: str, batch: int, seed: int) -> Tuple[Callable[[], float], Dict[str, Any]]:
    import keras

    from keras_recu.models import resnet20_1w1a
    from keras_recu.optimizers import L2SGD

    keras.utils.set_random_seed(seed)
    policy = ENGINE_POLICIES.get(engine, "float32")
    keras.config.set_dtype_policy(policy)
    model = resnet20_1w1a(input_shape=SHAPE, num_classes=CLASSES, tau=0.85)
    model.compile(optimizer=L2SGD(0.1, momentum=0.9, l2=5e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True if engine.endswith("-xla") else "auto")
    x, y = (keras.ops.convert_to_tensor(a) for a in _batch(batch, seed))
    return (lambda: float(model.train_on_batch(x, y))), {"jit_compile": bool(model.jit_compile), "dtype_policy": policy}


def check_inductor(device: str = "cpu") -> None:
    """Compile a one-line function on `device` with `torch.compile`'s default backend; EngineUnavailable if it cannot.

    On CPU inductor builds C++ code (on a GPU, Triton kernels): without a
    working compiler (`CXX`, else g++) the authors' model would fail only
    after minutes of tracing.
    """
    import torch

    try:
        torch.compile(lambda t: t * 2 + 1)(torch.ones(4, device=device))
    except Exception as error:  # noqa: BLE001  whatever inductor raises, said in one line
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
        raise EngineUnavailable(f"torch.compile (inductor) cannot compile on this machine: "
                                f"{type(error).__name__}: {first}") from None


def authors_stepper(batch: int, seed: int, compiled: bool = False) -> Tuple[Callable[[], float], Dict[str, Any]]:
    import torch
    import torch.nn.functional as F

    from benchmarks.authors_resnet20_torch import build

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # the authors' main.py does so unless a seed is set
    model = build(tau=0.85).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    forward = model
    if compiled:
        check_inductor(device.type)
        forward = torch.compile(model)  # the parameters stay the model's: the optimizer updates them
    x, y = _batch(batch, seed)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)  # NHWC -> NCHW
    y = torch.from_numpy(y).long().to(device)

    def step() -> float:
        optimizer.zero_grad()
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        optimizer.step()
        return loss.item()  # waits for the device

    return step, {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                  "cudnn_benchmark": True, "torch_compile": compiled}


def engine_facts(engine: str, own: Dict[str, Any], environment: Dict[str, Any], **extra: Any) -> Dict[str, Any]:
    """What a worker reports: the process's environment, then what the engine itself found.

    The engine's own facts win: the authors' model runs on the device torch
    chose (`own["device"]`), whatever the Keras backend of the environment
    would describe. (A record of 2026-11-28 was written the other way round
    and labels the authors' GPU run "cpu"; see BENCHMARKS.md.) A Keras engine's
    device is asked of its own backend; `framework` names what ran the step.
    """
    backend = engine.split("-")[1] if engine.startswith("keras-") else None
    facts = {**environment, **own, "engine": engine, **extra}
    facts["framework"] = f"keras/{backend}" if backend else "torch"
    if backend:
        facts["keras_backend"] = backend
        if "device" not in own:
            facts["device"] = harness.device_description(backend)
    else:
        facts.pop("keras_backend", None)  # the authors' model does not run on Keras
    facts["tensorflow_imported"] = harness.tensorflow_imported()
    return facts


def serve(engine: str, batch: int, seed: int, warmup: int) -> None:
    """The worker's main loop (see the module docstring)."""
    backend = engine.split("-")[1] if engine.startswith("keras-") else None
    if backend not in (None, "tensorflow"):
        harness.hide_tensorflow()
    try:
        if backend:
            step, facts = keras_stepper(engine, batch, seed)
        else:
            step, facts = authors_stepper(batch, seed, compiled=engine.endswith("-compiled"))
        start = time.perf_counter()
        loss = step()
        facts["first_step_s"] = round(time.perf_counter() - start, 2)
    except Exception as error:  # noqa: BLE001  the parent records the one line
        said = str(error) if isinstance(error, EngineUnavailable) else f"{type(error).__name__}: {error}"
        message = " ".join(said.split())[:500]
        print("@@FAILED " + message, flush=True)
        raise SystemExit(1) from None
    start = time.perf_counter()
    for _ in range(warmup):
        loss = step()
    facts.update(warmup_steps=warmup, warmup_s=round(time.perf_counter() - start, 2))
    facts = engine_facts(engine, facts, harness.environment(), batch=batch, loss_after_warmup=loss)
    print("@@READY " + json.dumps(facts), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "QUIT":
            break
        step()  # untimed: re-warm after the other engines' rounds
        print("@@TIMES " + json.dumps(time_steps(step, int(command[1]))), flush=True)


class Worker:
    """Parent-side proxy of one engine's worker process; `worker(n)` times n steps."""

    def __init__(self, engine: str, batch: int, seed: int = 0, warmup: int = 3) -> None:
        if engine not in ENGINES:
            raise ValueError(f"Unknown engine {engine!r}; known: {', '.join(ENGINES)}.")
        self.engine = engine
        backend = {"KERAS_BACKEND": engine.split("-")[1]} if engine.startswith("keras-") else {}
        self.process = subprocess.Popen(
            module_command(WORKER, engine, "--batch", batch, "--seed", seed, "--warmup", warmup),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=module_env(**backend))
        self.facts: Dict[str, Any] = {}
        self._pending = b""

    def _line(self, deadline: Optional[float]) -> Optional[str]:
        """The worker's next output line; None at its end. Raises TimeoutError after `deadline`."""
        fd = self.process.stdout.fileno()
        while b"\n" not in self._pending:
            wait = None if deadline is None else deadline - time.time()
            if wait is not None and (wait <= 0 or not select.select([fd], [], [], wait)[0]):
                raise TimeoutError(f"worker {self.engine} did not answer in time")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.decode(errors="replace")

    def _reply(self, tag: str, timeout_s: Optional[float] = None) -> str:
        deadline = None if timeout_s is None else time.time() + timeout_s
        while True:
            line = self._line(deadline)
            if line is None:
                raise RuntimeError(f"worker {self.engine} ended (exit {self.process.wait()}) before {tag}")
            if line.startswith(f"@@{tag} "):
                return line[len(tag) + 3:]
            if line.startswith("@@FAILED "):
                self.process.wait()
                raise EngineUnavailable(line[len("@@FAILED "):])
            sys.stderr.write(f"[{self.engine}] {line}\n")

    def ready(self, timeout_s: Optional[float] = None) -> Dict[str, Any]:
        """Wait until the worker has built and warmed up its model; its facts.

        EngineUnavailable (a RuntimeError) with the worker's one line when it
        could not build or compile its engine.
        """
        self.facts = json.loads(self._reply("READY", timeout_s))
        return self.facts

    def __call__(self, steps: int) -> List[float]:
        self.process.stdin.write(f"STEPS {steps}\n".encode())
        self.process.stdin.flush()
        return json.loads(self._reply("TIMES"))

    def close(self, wait_s: float = 30) -> Optional[int]:
        """Ask the worker to quit; kill it if it has not after `wait_s` (one stuck compiling, say)."""
        if self.process.poll() is None:
            try:
                self.process.stdin.write(b"QUIT\n")
                self.process.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                return self.process.wait(wait_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="one engine's worker (see benchmarks/engines.py)")
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=3)
    options = parser.parse_args()
    serve(options.engine, options.batch, options.seed, options.warmup)
