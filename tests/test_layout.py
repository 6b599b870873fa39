"""The architecture, checked on the source: the house's order, no import circle, no private reach-in, sizes.

Read with `ast`, nothing is imported, so this runs on every backend. The
rules:

* the core imports nothing above it and no TensorFlow at import time;
* ORDER, the one picture of keras_recu: each module imports only modules of
  lower tiers (function-level imports count), and every module is in it;
* no import circle in keras_recu/ or benchmarks/ (function-level imports count);
* no private helper of one module used by another (`from x import _y`,
  `x._y`), and no private module imported from outside its package;
* sizes: modules of keras_recu at most 600 lines, functions at most 80
  (declarative ones allow-listed), benchmark scripts at most 300;
* no private attribute of another library (Keras) outside keras_recu/_compat/.

Each rule is also run on a small fake project, to show it flags what it should.
"""

import ast
import collections
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "keras_recu"
#: The one home of compatibility shims, the only place that may read another library's private attributes.
COMPAT = PACKAGE / "_compat"

# The backend-neutral core: Keras 3 on TensorFlow, JAX or torch.
CORE = (
    "ops", "quantizers", "constraints", "callbacks", "layers", "models", "optimizers", "losses",
    "diagnostics", "profile", "inspection", "tau", "_compat",
)
# Above the core, importing downward only.
DEPLOYMENT_AND_FRONTS = ("deploy", "larq", "torch_import")
UPPER = ("keras_recu.deploy", "keras_recu.larq", "keras_recu.torch_import", "keras_recu.app")
TF_BOUND = ("tensorflow", "tf_keras", "larq", "larq_compute_engine", "tensorflow_datasets")

# --------------------------------------------------------------------------
# The house's order, bottom first: one tier a line, read from README.md (its "Where things are").
#
# A module imports only modules of LOWER tiers; the entries of one line stand
# beside each other and import none of each other. An entry names a module or
# a package of keras_recu, relative to it (`models` is keras_recu.models), and a
# package's modules belong to its entry (keras_recu.models.cifar to `models`)
# unless the table lists them themselves: the longest entry wins, so a
# package's own order can be written as entries of their own. Inside one
# entry, a package's face (its __init__.py) may import the package's modules
# and they may import each other (rule: no circle); no module imports the face
# of a package it lies in. `__init__` is keras_recu/__init__.py, the face of
# the whole package; `app.__init__` is the face of keras_recu.app alone. Every module of keras_recu must belong to an entry, and
# every entry must name a module or package.
#: The marker of the block in README.md that holds the order, so that the
#: order is written down once, where a newcomer reads it.
ORDER_MARKER = "<!-- the house's order: tests/test_layout.py reads this block -->"


def readme_order(readme: Path = REPO / "README.md") -> str:
    """The fenced block after ORDER_MARKER in README.md: the tiers, bottom first, one a line."""
    text = readme.read_text(encoding="utf-8")
    assert ORDER_MARKER in text, f"README.md has lost the house's order (the block after {ORDER_MARKER!r})"
    block = text.split(ORDER_MARKER, 1)[1].split("```", 2)[1]
    return block.split("\n", 1)[1]  # after the fence's language word


ORDER = readme_order()

#: Private modules and names that other modules may import, each with its reason.
#: A private package listed here may be imported with its modules.
PRIVATE_ALLOWED = {
    "keras_recu._compat": "the one home of compatibility shims (Keras' private API among them), "
    "read by every module that needs one",
}

MODULE_LINES = 600
FUNCTION_LINES = 80
BENCHMARK_LINES = 300
#: Functions allowed over FUNCTION_LINES: declarative ones, each with its reason ("file:qualified name").
LONG_FUNCTIONS_ALLOWED = {
    "keras_recu/app/flags.py:add_train_parser": "declarative: the train command's flags, one call each",
}


def _files(module: str) -> List[Path]:
    """The files of `keras_recu.<module>`: the module, or every module of the package."""
    path = PACKAGE / f"{module}.py"
    return [path] if path.exists() else sorted((PACKAGE / module).rglob("*.py"))


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
    for path in _files(module):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
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

    for path in _files(module):
        yield from visit(ast.parse(path.read_text(encoding="utf-8")).body)


def _is_under(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("module", CORE)
def test_core_imports_nothing_above_it(module):
    bad = [(line, name) for line, name in _all_imports(module) if _is_under(name, UPPER)]
    assert bad == [], f"keras_recu/{module} imports from above the core: {bad}"


@pytest.mark.parametrize("module", CORE)
def test_core_imports_no_tensorflow_when_imported(module):
    bad = [(line, name) for line, name in _module_level_imports(module) if _is_under(name, TF_BOUND)]
    assert bad == [], f"keras_recu/{module} imports TensorFlow-bound packages at module level: {bad}"


@pytest.mark.parametrize("module", DEPLOYMENT_AND_FRONTS)
def test_deployment_and_the_larq_front_import_nothing_from_the_application(module):
    bad = [(line, name) for line, name in _all_imports(module) if _is_under(name, ("keras_recu.app",))]
    assert bad == [], f"keras_recu/{module} imports the application: {bad}"


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
    found = [access for path in files if COMPAT not in path.parents for access in private_accesses(path, defined)]
    assert found == [], "private attributes of other libraries (move them to keras_recu/_compat/):\n" + "\n".join(found)


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


# --------------------------------------------------------------------------
# The project's modules and who imports whom, read from the source


def _is_private_module(module: str) -> bool:
    return any(_is_private(part) for part in module.split("."))


class Import(NamedTuple):
    source: str  # the importing module (dotted)
    target: str  # the project module it imports (dotted)
    line: int
    names: Tuple[str, ...]  # what `from target import ...` takes from it; () for a module itself


class Project:
    """The Python modules under `root`'s top folders, by dotted name, and their imports of each other.

    A folder with an `__init__.py` is a package (its face is the package's
    name); a folder without one holds scripts that import their siblings by
    name (`import harness` in benchmarks/ is benchmarks.harness), as Python
    does for a script's own folder.
    """

    def __init__(self, root: Path, tops: Sequence[str]):
        self.root = root
        self.modules: Dict[str, Path] = {}
        for top in tops:
            for path in sorted((root / top).rglob("*.py")):
                parts = path.relative_to(root).with_suffix("").parts
                self.modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        self._trees: Dict[str, ast.Module] = {}

    def file(self, module: str) -> str:
        return self.modules[module].relative_to(self.root).as_posix()

    def tree(self, module: str) -> ast.Module:
        if module not in self._trees:
            self._trees[module] = ast.parse(self.modules[module].read_text(encoding="utf-8"))
        return self._trees[module]

    def is_face(self, module: str) -> bool:
        return self.modules[module].name == "__init__.py"

    def package_of(self, module: str) -> str:
        """The package whose names `from . import x` reads: a face's own, else the enclosing one."""
        return module if self.is_face(module) else module.rpartition(".")[0]

    def _deepest(self, name: str) -> Optional[str]:
        """The deepest project module that `name` is or lies in."""
        while name:
            if name in self.modules:
                return name
            name = name.rpartition(".")[0]
        return None

    def qualified(self, source: str, name: str) -> Optional[str]:
        """The dotted project name an absolute import of `name` in `source` reaches, or None (another library)."""
        first = name.split(".")[0]
        in_scripts = not (self.modules[source].parent / "__init__.py").exists()
        if in_scripts and f"{self.package_of(source)}.{first}" in self.modules:
            return f"{self.package_of(source)}.{name}"  # a script's sibling
        return name if any(m == first or m.startswith(first + ".") for m in self.modules) else None

    def base(self, source: str, node: ast.ImportFrom) -> Optional[str]:
        """The dotted project name `from BASE import ...` reads from, or None (another library)."""
        if not node.level:
            return self.qualified(source, node.module or "")
        package = self.package_of(source).split(".")
        package = package[: len(package) - (node.level - 1)]
        return ".".join(package + ([node.module] if node.module else []))

    def imports(self, source: str) -> List[Import]:
        """Every import of a project module in `source`, function-level ones included, itself left out."""
        found = []
        for node in ast.walk(self.tree(source)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    name = self.qualified(source, alias.name)
                    if name and self._deepest(name):
                        found.append(Import(source, self._deepest(name), node.lineno, ()))
            elif isinstance(node, ast.ImportFrom):
                base = self.base(source, node)
                for alias in node.names if base else ():
                    if f"{base}.{alias.name}" in self.modules:  # `from package import module`
                        found.append(Import(source, f"{base}.{alias.name}", node.lineno, ()))
                    elif self._deepest(base):
                        found.append(Import(source, self._deepest(base), node.lineno, (alias.name,)))
        return [entry for entry in found if entry.target != source]

    def graph(self) -> Dict[str, Dict[str, int]]:
        """module -> {imported module: line of its first import}."""
        edges: Dict[str, Dict[str, int]] = {module: {} for module in self.modules}
        for module in self.modules:
            for entry in sorted(self.imports(module), key=lambda entry: entry.line):
                edges[module].setdefault(entry.target, entry.line)
        return edges


# --------------------------------------------------------------------------
# The order


def parse_order(text: str) -> Dict[str, int]:
    """entry -> its tier (0 at the bottom), from the table's lines (`#` starts a comment)."""
    tiers: Dict[str, int] = {}
    lines = [line.split("#")[0].split() for line in text.splitlines()]
    for tier, entries in enumerate(line for line in lines if line):
        for entry in entries:
            assert entry not in tiers, f"{entry} is listed twice in the order"
            tiers[entry] = tier
    return tiers


def _relative(module: str, package: str) -> str:
    return "__init__" if module == package else module[len(package) + 1:]


def entry_of(module: str, package: str, tiers: Dict[str, int]) -> Optional[str]:
    """The table's entry that `module` of `package` belongs to: the longest that is it or holds it."""
    name = _relative(module, package)
    if f"{name}.__init__" in tiers:  # `app.__init__` names the face alone, not the package's modules
        return f"{name}.__init__"
    holders = [entry for entry in tiers if name == entry or name.startswith(entry + ".")]
    return max(holders, key=len) if holders else None


def unlisted(project: Project, package: str, tiers: Dict[str, int]) -> List[str]:
    """Modules of `package` that no entry holds, and entries that hold no module."""
    modules = [m for m in project.modules if m == package or m.startswith(package + ".")]
    missing = [f"{project.file(m)}: not in the order" for m in modules if entry_of(m, package, tiers) is None]
    used = {entry_of(m, package, tiers) for m in modules}
    stale = [f"`{entry}`: in the order, but no such module or package" for entry in tiers if entry not in used]
    return missing + stale


def order_violations(project: Project, package: str, tiers: Dict[str, int]) -> List[str]:
    """Imports of `package`'s modules that go up or sideways in the order, or reach a face above them."""
    found = []
    for source in (m for m in project.modules if m == package or m.startswith(package + ".")):
        for entry in project.imports(source):
            target = entry.target
            if not (target == package or target.startswith(package + ".")):
                continue
            where = f"{project.file(source)}:{entry.line} imports {target}"
            if project.is_face(target) and source.startswith(target + "."):
                found.append(f"{where}, the face of its own package")
                continue
            own, other = entry_of(source, package, tiers), entry_of(target, package, tiers)
            if own is None or other is None or own == other:
                continue  # unlisted ones are reported by `unlisted`; one entry holds one package
            if tiers[other] >= tiers[own]:
                side = "beside" if tiers[other] == tiers[own] else "above"
                found.append(f"{where} (`{other}`), {side} its own `{own}`")
    return found


# --------------------------------------------------------------------------
# Circles


def _strongly_connected(edges: Dict[str, Dict[str, int]]) -> List[List[str]]:
    """Tarjan's components, iteratively: each set of modules that reach each other."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_cycle(edges: Dict[str, Dict[str, int]], start: str, within: Set[str]) -> List[str]:
    """The shortest path start -> ... -> start inside `within` (breadth first)."""
    previous: Dict[str, str] = {}
    queue = collections.deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(edges[node]):
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return list(reversed(path)) + [start]
            if successor in within and successor not in previous:
                previous[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in a component but on no cycle")


def circles(project: Project) -> List[str]:
    """Each import circle as its cycle of files, each arrow at the line of its import."""
    edges = project.graph()
    found: Dict[Tuple[str, ...], str] = {}
    for component in _strongly_connected(edges):
        if len(component) < 2:
            continue
        for module in component:
            cycle = _shortest_cycle(edges, module, set(component))
            turn = cycle.index(min(cycle[:-1]))
            key = tuple(cycle[turn:-1] + cycle[:turn])
            steps = [f"{project.file(a)}:{edges[a][b]}" for a, b in zip(key, key[1:] + key[:1])]
            found.setdefault(key, " -> ".join(steps + [project.file(key[0])]))
    return sorted(found.values())


# --------------------------------------------------------------------------
# Private reach-ins


def _bound_modules(project: Project, module: str) -> Dict[str, str]:
    """Names that imports in `module` bind to project modules (anywhere in the file)."""
    bound = {}
    for node in ast.walk(project.tree(module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = project.qualified(module, alias.name)
                if name and alias.asname and name in project.modules:
                    bound[alias.asname] = name
                elif name and not alias.asname:  # `import a.b` binds `a`
                    bound[alias.name.split(".")[0]] = project.qualified(module, alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = project.base(module, node)
            for alias in node.names if base else ():
                if f"{base}.{alias.name}" in project.modules:
                    bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    return bound


def _dotted(node: ast.AST) -> Optional[List[str]]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id] + parts[::-1] if isinstance(node, ast.Name) else None


def _private_module_reached(source: str, target: str) -> bool:
    """An import of a private module from outside its package; one at the top (keras_recu._tau) is private to itself."""
    parts = target.split(".")
    for depth, part in enumerate(parts):
        if _is_private(part):
            owner = ".".join(parts[:depth])
            return depth < 2 or not (source == owner or source.startswith(owner + "."))
    return False


def private_reach_ins(project: Project, allowed=PRIVATE_ALLOWED) -> List[str]:
    """`from x import _y`, `x._y` on an imported project module x, and private modules imported from outside."""
    found = []
    for source in project.modules:
        for entry in project.imports(source):
            where = f"{project.file(source)}:{entry.line}"
            for name in entry.names:
                if _is_private(name) and f"{entry.target}.{name}" not in allowed:
                    found.append(f"{where}: from {entry.target} import {name}")
            if _private_module_reached(source, entry.target) and not _is_under(entry.target, allowed):
                found.append(f"{where}: imports the private module {entry.target}")
        bound = _bound_modules(project, source)
        for node in ast.walk(project.tree(source)):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            chain = _dotted(node.value)
            if not chain or chain[0] not in bound:
                continue
            target = ".".join([bound[chain[0]]] + chain[1:])
            if target in project.modules and target != source and f"{target}.{node.attr}" not in allowed:
                found.append(f"{project.file(source)}:{node.lineno}: {'.'.join(chain)}.{node.attr} ({target})")
    return sorted(set(found))


# --------------------------------------------------------------------------
# Sizes


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[Tuple[str, ast.AST]]:
    """(qualified name, node) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def long_modules(project: Project, top: str, limit: int) -> List[str]:
    found = []
    for module, path in project.modules.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if module.split(".")[0] == top and lines > limit:
            found.append(f"{project.file(module)}: {lines} lines (at most {limit})")
    return found


def long_functions(project: Project, top: str, limit: int, allowed=LONG_FUNCTIONS_ALLOWED) -> List[str]:
    """Functions of `top`'s modules longer than `limit` lines (from `def` to their last line), less the allowed."""
    found = []
    for module in project.modules:
        if module.split(".")[0] != top:
            continue
        for name, node in _functions(project.tree(module)):
            lines = node.end_lineno - node.lineno + 1
            key = f"{project.file(module)}:{name}"
            if lines > limit and key not in allowed:
                found.append(f"{project.file(module)}:{node.lineno}: {name}, {lines} lines (at most {limit})")
    return found


def stale_allowances(project: Project, allowed=LONG_FUNCTIONS_ALLOWED) -> List[str]:
    """Allow-list entries that name no function (moved or renamed): the list stays honest."""
    present = {
        f"{project.file(module)}:{name}" for module in project.modules for name, _ in _functions(project.tree(module))
    }
    return [key for key in allowed if key not in present]


# --------------------------------------------------------------------------
# The rules on the project




@pytest.fixture(scope="module")
def project():
    return Project(REPO, ("keras_recu", "benchmarks"))


def test_every_module_of_keras_recu_is_in_the_order(project):
    found = unlisted(project, "keras_recu", parse_order(ORDER))
    assert found == [], "the order (ORDER in tests/test_layout.py) is the one picture:\n" + "\n".join(found)


def test_each_module_imports_only_modules_below_it(project):
    found = order_violations(project, "keras_recu", parse_order(ORDER))
    assert found == [], "imports against the order (ORDER in tests/test_layout.py):\n" + "\n".join(found)


def test_no_import_circle(project):
    found = circles(project)
    assert found == [], "import circles (function-level imports count):\n" + "\n".join(found)


def test_no_private_helper_of_one_module_used_by_another(project):
    found = private_reach_ins(project)
    assert found == [], "private names used across modules (make them public where they belong):\n" + "\n".join(found)


def test_modules_of_keras_recu_are_at_most_600_lines(project):
    found = long_modules(project, "keras_recu", MODULE_LINES)
    assert found == [], "\n".join(found)


def test_functions_of_keras_recu_are_at_most_80_lines(project):
    found = long_functions(project, "keras_recu", FUNCTION_LINES)
    assert found == [], "\n".join(found)


def test_benchmark_scripts_are_at_most_300_lines(project):
    found = long_modules(project, "benchmarks", BENCHMARK_LINES)
    assert found == [], "\n".join(found)


def test_the_allow_lists_name_what_exists(project):
    stale = stale_allowances(project)
    stale += [name for name in PRIVATE_ALLOWED if name.split(".")[0] == "keras_recu"
              and name not in project.modules and name.rpartition(".")[0] not in project.modules]
    assert stale == [], f"allowances for things that no longer exist: {stale}"


# --------------------------------------------------------------------------
# Each rule on a small fake project


FAKE = {
    "pkg/__init__.py": "from pkg import high\n",
    "pkg/low.py": "import os\n\n\ndef _helper():\n    from pkg import high  # up, and a circle\n    return high\n",
    "pkg/high.py": (
        "from pkg import low\nfrom pkg.low import _helper\nfrom . import mid\n\n\n"
        "def long():\n" + "    x = 1\n" * 80 + "    return low._helper(), pkg_face()\n\n\n"
        "def pkg_face():\n    import pkg\n    return pkg\n"
    ),
    "pkg/mid.py": (
        "from pkg import low\nimport pkg.low as alias\nimport pkg.sub.inner\nalias._helper\npkg.sub.inner._x\n"
    ),
    "pkg/_private.py": "",
    "pkg/sub/__init__.py": "from pkg.sub import inner\nfrom . import _own\n",
    "pkg/sub/inner.py": "import pkg.sub\nfrom pkg import _private\n",
    "pkg/sub/_own.py": "",
    "scripts/a.py": "import b\nimport os.path\n",
    "scripts/b.py": "from scripts import a\nfrom . import a as again\n",
}
FAKE_ORDER = """
    low _private   # a comment
    mid
    high
    sub
    gone
    __init__
"""


@pytest.fixture
def fake(tmp_path):
    for name, text in FAKE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return Project(tmp_path, ("pkg", "scripts"))


def test_the_order_flags_what_it_should(fake):
    tiers = parse_order(FAKE_ORDER)
    assert tiers == {"low": 0, "_private": 0, "mid": 1, "high": 2, "sub": 3, "gone": 4, "__init__": 5}
    assert entry_of("pkg.sub.inner", "pkg", tiers) == "sub" and entry_of("pkg", "pkg", tiers) == "__init__"
    assert order_violations(fake, "pkg", tiers) == [
        "pkg/high.py:91 imports pkg, the face of its own package",
        "pkg/low.py:5 imports pkg.high (`high`), above its own `low`",
        "pkg/mid.py:3 imports pkg.sub.inner (`sub`), above its own `mid`",
        "pkg/sub/inner.py:1 imports pkg.sub, the face of its own package",
    ]
    assert unlisted(fake, "pkg", tiers) == ["`gone`: in the order, but no such module or package"]
    assert unlisted(fake, "pkg", parse_order("low _private high sub"))[:2] == [
        "pkg/__init__.py: not in the order", "pkg/mid.py: not in the order"]


def test_the_circles_are_found_with_their_files(fake):
    assert circles(fake) == [
        "pkg/__init__.py:1 -> pkg/high.py:91 -> pkg/__init__.py",
        "pkg/high.py:1 -> pkg/low.py:5 -> pkg/high.py",
        "pkg/high.py:3 -> pkg/mid.py:1 -> pkg/low.py:5 -> pkg/high.py",
        "pkg/sub/__init__.py:1 -> pkg/sub/inner.py:1 -> pkg/sub/__init__.py",
        "scripts/a.py:1 -> scripts/b.py:1 -> scripts/a.py",
    ]


def test_private_reach_ins_are_flagged(fake):
    assert private_reach_ins(fake) == [
        "pkg/high.py:2: from pkg.low import _helper",
        "pkg/high.py:87: low._helper (pkg.low)",
        "pkg/mid.py:4: alias._helper (pkg.low)",
        "pkg/mid.py:5: pkg.sub.inner._x (pkg.sub.inner)",
        "pkg/sub/inner.py:2: imports the private module pkg._private",
    ]
    assert private_reach_ins(fake, allowed={"pkg._private": "", "pkg.low._helper": "", "pkg.sub.inner._x": ""}) == []


def test_long_modules_and_functions_are_flagged(fake):
    assert long_functions(fake, "pkg", 80, allowed={}) == ["pkg/high.py:6: long, 82 lines (at most 80)"]
    assert long_functions(fake, "pkg", 80, allowed={"pkg/high.py:long": "a table"}) == []
    assert long_modules(fake, "pkg", 80) == ["pkg/high.py: 92 lines (at most 80)"]
    assert stale_allowances(fake, allowed={"pkg/high.py:long": "", "pkg/low.py:gone": ""}) == ["pkg/low.py:gone"]
