"""The architecture, checked on the source: who imports whom, and no private Keras API outside _compat.

Read with `ast`, nothing is imported, so this runs on every backend.
"""

import ast
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_recu"

# The backend-neutral core: Keras 3 on TensorFlow, JAX or torch.
CORE = (
    "ops", "quantizers", "constraints", "callbacks", "layers", "models", "optimizers", "losses",
    "diagnostics", "profile", "inspection", "tau", "_compat", "_legacy_keras",
)
# Above the core, importing downward only.
DEPLOYMENT_AND_FRONTS = ("deploy", "larq", "torch_import")
UPPER = ("keras_recu.deploy", "keras_recu.larq", "keras_recu.torch_import", "keras_recu.app")
TF_BOUND = ("tensorflow", "tf_keras", "larq", "larq_compute_engine", "tensorflow_datasets")


def _tree(module: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))


def _imported(node: ast.AST, module: str) -> List[str]:
    """The absolute names an import statement of `keras_recu.<module>` brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: from the package keras_recu
            base = "keras_recu" + (f".{node.module}" if node.module else "")
        else:
            base = node.module or ""
        # `from keras_recu import deploy` imports keras_recu.deploy.
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def _all_imports(module: str) -> Iterator[Tuple[int, str]]:
    for node in ast.walk(_tree(module)):
        for name in _imported(node, module):
            yield node.lineno, name


def _module_level_imports(module: str) -> Iterator[Tuple[int, str]]:
    """Imports that run when the module is imported: outside function bodies."""

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            for name in _imported(node, module):
                yield node.lineno, name
            yield from visit(ast.iter_child_nodes(node))

    yield from visit(_tree(module).body)


def _is_under(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("module", CORE)
def test_core_imports_nothing_above_it(module):
    bad = [(line, name) for line, name in _all_imports(module) if _is_under(name, UPPER)]
    assert bad == [], f"keras_recu/{module}.py imports from above the core: {bad}"


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_tensorflow_when_imported(module):
    bad = [(line, name) for line, name in _module_level_imports(module) if _is_under(name, TF_BOUND)]
    assert bad == [], f"keras_recu/{module}.py imports TensorFlow-bound packages at module level: {bad}"


@pytest.mark.parametrize("module", DEPLOYMENT_AND_FRONTS)
def test_deployment_and_the_larq_front_import_nothing_from_the_application(module):
    bad = [(line, name) for line, name in _all_imports(module) if _is_under(name, ("keras_recu.app",))]
    assert bad == [], f"keras_recu/{module}.py imports the application: {bad}"


def test_profile_does_not_import_the_models():
    bad = [(line, name) for line, name in _all_imports("profile") if _is_under(name, ("keras_recu.models",))]
    assert bad == [], "layers declare what the summary needs (performs_macs); profile reads it"


# --------------------------------------------------------------------------
# Private attributes


def _package_files() -> List[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_private_names(files) -> Set[str]:
    """Every private name the project defines: functions, classes, attributes it assigns, aliases."""
    defined = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
            elif isinstance(node, ast.alias) and node.asname:
                defined.add(node.asname)
            elif isinstance(node, ast.arg):
                defined.add(node.arg)
            elif isinstance(node, ast.ImportFrom) and node.module:
                defined.update(alias.name for alias in node.names)
                # modules of the package, such as keras_recu._compat
                defined.update(part for part in node.module.split("."))
    return {name for name in defined if _is_private(name)}


_ATTRIBUTE_BUILTINS = ("getattr", "setattr", "hasattr", "delattr")


def private_accesses(path: Path, defined: Set[str]) -> List[str]:
    """Reads of private attributes that the project does not define, in one file.

    The heuristic: an attribute `x._name` (or `getattr(x, "_name")`) whose
    name no module of keras_recu defines (as a function, class, assigned
    attribute or module) is another library's private attribute: Keras',
    in this package. `self._tracker` is flagged like `layer._tracker`;
    `self._tau` is not, since keras_recu assigns `_tau` itself.
    """
    label = path.relative_to(PACKAGE.parent) if PACKAGE in path.parents else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        name = None
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            name = node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ATTRIBUTE_BUILTINS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            name = node.args[1].value
        if name is not None and name not in defined:
            found.append(f"{label}:{node.lineno}: {name}")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for imported in _imported(node, path.stem):
                if _is_under(imported, ("keras.src",)):
                    found.append(f"{label}:{node.lineno}: {imported}")
    return found


def test_no_private_keras_attribute_outside_compat():
    files = _package_files()
    defined = _defined_private_names(files)
    found = [access for path in files if path.name != "_compat.py" for access in private_accesses(path, defined)]
    assert found == [], "private attributes of other libraries (move them to keras_recu/_compat.py):\n" + "\n".join(found)


def test_the_heuristic_flags_what_it_should(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import keras.src.utils\n"
        "class Layer:\n"
        "    def call(self):\n"
        "        self._own = 1\n"
        "        layer._tracker.unlock()\n"
        "        getattr(model, '_functional', None)\n"
        "        return self._own + self._kernel + self.__class__.__name__.__len__()\n"
    )
    defined = _defined_private_names([sample])
    found = [entry.split(": ")[1] for entry in private_accesses(sample, defined)]
    assert sorted(found) == ["_functional", "_kernel", "_tracker", "keras.src.utils"]
