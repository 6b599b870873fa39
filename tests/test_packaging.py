"""setup.cfg as a user's pip reads it: which Pythons the core admits, and what the test suite needs.

* The core (`install_requires`) admits every Python that Keras 3 admits: keras-recu adds no limit
  of its own; an extra is limited by its own packages (TensorFlow, larq-compute-engine...), which
  pip resolves.
* Every third-party module that `tests/` or `conftest.py` imports is declared: in the core, or in an
  extra (SciPy in `test`), or brought by a declared package whose metadata requires it.
"""

import ast
import configparser
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The repository's own packages.
LOCAL = {"keras_recu", "tests", "benchmarks"}
#: Import names whose distribution is named otherwise.
DISTRIBUTION = {"PIL": "pillow", "tensorflow_datasets": "tensorflow-datasets",
                "larq_compute_engine": "larq-compute-engine"}
#: Modules the tests import that a declared distribution requires: module -> (carrier, distribution).
CARRIED = {
    "absl": ("tensorflow", "absl-py"),  # absl.testing, tests/test_conformance.py (tf_only)
    "terminaltables": ("larq", "terminaltables"),  # tests/test_profile.py, larq's own table (tf_only)
    "h5py": ("keras", "h5py"),  # tests/test_kill_resume.py reads the weights a .keras file holds
}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _config() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return config


def _names(requirements: str) -> set:
    """The distribution names of a setup.cfg requirement list (comments and blank lines skipped)."""
    names = set()
    for line in requirements.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(_normalized(re.match(r"[A-Za-z0-9_.-]+", line).group(0)))
    return names


def _extras() -> dict:
    config = _config()
    return {extra: _names(config["options.extras_require"][extra]) for extra in config["options.extras_require"]}


def _declared() -> set:
    names = _names(_config()["options"]["install_requires"])
    for requirements in _extras().values():
        names |= requirements
    return names


def _test_imports() -> dict:
    """Top-level module -> the test files that import it, for third-party modules only."""
    found: dict = {}
    for path in sorted([*(ROOT / "tests").glob("*.py"), ROOT / "conftest.py"]):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top not in LOCAL:
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_third_party_module_the_tests_import_is_declared():
    declared, imports = _declared(), _test_imports()
    assert {"numpy", "keras", "pytest", "torch", "scipy"} <= set(imports), sorted(imports)  # the scan works
    undeclared = []
    for module, files in sorted(imports.items()):
        if module in CARRIED:
            carrier, distribution = CARRIED[module]
            assert carrier in declared, f"{module} comes with {carrier}, which setup.cfg does not declare"
            try:
                required = importlib.metadata.requires(carrier) or []
            except importlib.metadata.PackageNotFoundError:
                continue  # not installed here: its metadata cannot be read
            assert any(_normalized(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) == distribution for r in required), \
                f"{carrier} no longer requires {distribution}: declare it for {sorted(files)}"
        elif _normalized(DISTRIBUTION.get(module, module)) not in declared:
            undeclared.append(f"{module} (imported by {', '.join(sorted(files))})")
    assert not undeclared, f"imported by the tests, declared nowhere in setup.cfg: {undeclared}"


def test_scipy_is_in_the_test_extra_and_pinned_in_the_constraints():
    assert "scipy" in _extras()["test"]
    pins = re.findall(r"^scipy==([\d.]+)$", (ROOT / "constraints.txt").read_text(), flags=re.MULTILINE)
    assert len(pins) == 1


def test_all_installs_every_extra():
    extras = _extras()
    everything = re.search(r"keras-recu\[([^\]]*)\]", _config()["options.extras_require"]["all"]).group(1)
    assert sorted(name.strip() for name in everything.split(",")) == sorted(set(extras) - {"all"})


def test_the_core_admits_every_python_keras_admits():
    specifiers = pytest.importorskip("packaging.specifiers")
    ours = specifiers.SpecifierSet(_config()["options"]["python_requires"])
    keras_requires = importlib.metadata.metadata("keras")["Requires-Python"]
    theirs = specifiers.SpecifierSet(keras_requires)
    versions = [f"3.{minor}" for minor in range(8, 30)]
    assert [v for v in versions if v in ours] == [v for v in versions if v in theirs], (str(ours), keras_requires)
    assert sys.version.split()[0] in ours  # the Python running this
