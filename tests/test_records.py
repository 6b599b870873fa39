"""The benchmarks' records and what README.md and BENCHMARKS.md say of them.

* A worker of `benchmarks/engines.py` reports the device its engine ran on, not the one the
  environment's Keras backend would name (the committed H200 record labels the authors' GPU run
  "cpu": BENCHMARKS.md says how).
* Every record named under `benchmarks/results/` exists, and every JSON record there is cited in
  BENCHMARKS.md with its command.
"""

import itertools
import json
import re
from pathlib import Path

from benchmarks import harness
from benchmarks.engines import engine_facts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ENVIRONMENT = {"date": "2026-11-28T19:38:50+00:00", "keras_backend": "jax", "device": "cpu", "torch": "2.11.0"}


def test_the_authors_engine_keeps_the_device_torch_chose():
    facts = engine_facts("authors-torch", {"device": "NVIDIA H200", "cudnn_benchmark": True}, ENVIRONMENT,
                         batch=256, loss_after_warmup=2.3)
    assert facts["device"] == "NVIDIA H200" and facts["framework"] == "torch"
    assert "keras_backend" not in facts  # the authors' model does not run on Keras
    assert facts["engine"] == "authors-torch" and facts["batch"] == 256 and facts["torch"] == "2.11.0"
    assert isinstance(facts["tensorflow_imported"], bool)


def test_a_keras_engine_names_its_own_backend_and_asks_it_for_the_device():
    facts = engine_facts("keras-torch", {"jit_compile": False}, ENVIRONMENT)
    assert facts["keras_backend"] == "torch" and facts["framework"] == "keras/torch"
    assert facts["device"] == harness.device_description("torch")
    facts = engine_facts("keras-jax", {"device": "NVIDIA H200"}, ENVIRONMENT)
    assert facts["device"] == "NVIDIA H200"  # what the engine found wins here too


def test_the_mislabelled_h200_record_is_corrected_in_benchmarks_md():
    record = json.loads((RESULTS / "gpu-train-step-h200.json").read_text())
    authors = record["result"]["variants"]["authors-torch"]
    assert authors["facts"]["device"] == "cpu" and authors["median_ms"] == 37.494  # the record, untouched
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert "**Correction: the record labels the authors' run \"cpu\"; it ran on the H200.**" in text
    for check, device in (("gpu-train-step-h200-authors.json", "NVIDIA H200"), ("cpu16-train-step-authors.json", "cpu")):
        facts = json.loads((RESULTS / check).read_text())["result"]["variants"]["authors-torch"]["facts"]
        assert facts["device"] == device and facts["batch"] == 256


def _expanded(name: str) -> list:
    """`a-{x,y}.png` -> [a-x.png, a-y.png]."""
    parts = re.split(r"\{([^}]*)\}", name)
    choices = [[part] if index % 2 == 0 else part.split(",") for index, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def test_every_record_the_documents_name_exists_and_every_json_record_is_cited():
    texts = {name: (ROOT / name).read_text() for name in ("README.md", "BENCHMARKS.md")}
    named = set()
    for text in texts.values():
        for match in re.finditer(r"benchmarks/results/([A-Za-z0-9_.,{}-]+)", text):
            name = match.group(1).rstrip(".,")
            if not name.endswith("-"):  # `ablation-<budget>.csv` is a pattern, not a file
                named.update(_expanded(name))
    missing = sorted(name for name in named if not (RESULTS / name).exists())
    assert not missing, f"named in README.md or BENCHMARKS.md, not under benchmarks/results/: {missing}"
    uncited = sorted(path.name for path in RESULTS.glob("*.json") if path.name not in texts["BENCHMARKS.md"])
    assert not uncited, f"records that BENCHMARKS.md does not cite: {uncited}"
    for path in RESULTS.glob("*.json"):
        record = json.loads(path.read_text())
        environments = [record.get("environment")] + [row.get("environment") for row in record.get("padding_cost", [])]
        # A record of several commands (a train, then a convert) lists them as `commands`.
        assert record.get("commands") or any(env and env.get("command") for env in environments), (
            f"{path.name} records no command")
