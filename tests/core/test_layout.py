"""The layout's rules, checked on the source: every import arrow points down the levels
written in docs/architecture.md ("Who may import whom", read from that page), families never
import each other, no private name crosses a module, and module-level imports form no cycle."""

import ast
import collections
import pathlib
import re

import pytest

from jaxmodels import registry

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "jaxmodels"
ARCHITECTURE = PACKAGE.parent / "docs" / "architecture.md"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: pathlib.Path, top_level_only: bool = False):
    """``(imported module, names, lineno)`` for every ``jaxmodels`` import in ``path``."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxmodels"):
            yield node.module, [a.name for a in node.names], node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("jaxmodels"):
                    yield a.name, [], node.lineno


def _targets(path: pathlib.Path):
    """``(imported module, lineno)``, each ``from X import name`` resolved to ``X.name`` when
    that is a module of the package."""
    for module, names, line in _imports(path):
        for name in names or [None]:
            sub = f"{module}.{name}"
            yield (sub if name and sub in MODULES else module), line


def _levels() -> list[list[str]]:
    """The numbered levels of docs/architecture.md: each a list of paths under jaxmodels/
    (``train/``, ``train/task.py``, ``models/<family>/``), top level first."""
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Who may import whom") :]
    section = section[: section.index("\n## ", 1)]
    levels = []
    for line in section.splitlines():
        m = re.match(r"(\d+)\. ((?:`[^`]+` ?)+):", line)
        if m:
            assert int(m.group(1)) == len(levels) + 1, line
            levels.append(re.findall(r"`([^`]+)`", m.group(2)))
    return levels


LEVELS = _levels()


def _level(module: str) -> int:
    """The level of ``module``: its most specific entry (a file before its folder)."""
    rel = MODULES[module].relative_to(PACKAGE).as_posix()
    best = None
    for i, entries in enumerate(LEVELS):
        for entry in entries:
            pattern = re.escape(entry).replace(re.escape("<family>"), "[^/]+")
            matches = re.fullmatch(pattern + ("" if entry.endswith(".py") else ".*"), rel)
            if matches and (best is None or len(entry) > best[1]):
                best = (i, len(entry))
    assert best is not None, f"{rel} is on no level of {ARCHITECTURE.name}: add it there"
    return best[0]


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "models" else None


def _arrows():
    """Every ``(importer, imported, line)`` inside the package, function-level imports too."""
    for name, path in MODULES.items():
        for target, line in _targets(path):
            if target in MODULES:
                yield name, target, line


def _upward(convert_to_family: bool):
    """Imports of a higher level; ``convert_to_family``: only the arrows from convert/ into a
    family (each family's converter is its models/<family>/hf.py), else all the others."""
    bad = []
    for name, target, line in _arrows():
        if _level(target) < _level(name):
            into_family = name.startswith("jaxmodels.convert") and _family(target) is not None
            if into_family == convert_to_family:
                levels = f"level {_level(target) + 1} is above level {_level(name) + 1}"
                bad.append(f"{name}:{line} imports {target} ({levels})")
    return bad


def test_the_levels_cover_the_package():
    assert len(LEVELS) >= 10, LEVELS
    for name in MODULES:
        _level(name)


def test_every_import_points_down():
    bad = _upward(convert_to_family=False)
    assert not bad, "\n".join(bad)


def test_convert_imports_no_family():
    bad = _upward(convert_to_family=True)
    assert not bad, "\n".join(bad)


def test_families_never_import_each_other():
    bad = [
        f"{name}:{line} imports {target}"
        for name, target, line in _arrows()
        if _family(name) and _family(target) not in (None, _family(name))
    ]
    assert not bad, "\n".join(bad)


def test_no_private_name_is_imported_across_modules():
    bad = [
        f"{name}:{line} imports {n} from {target}"
        for name, path in MODULES.items()
        for target, names, line in _imports(path)
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert not bad, "\n".join(bad)


def test_module_level_imports_have_no_cycle():
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for target, names, _ in _imports(path, top_level_only=True):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in MODULES and candidate != name:
                    deps.add(candidate)
                    break
        graph[name] = deps
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep] if dep in stack else [node, dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_every_family_folder_is_found_by_the_registry():
    folders = sorted(p.parent.name for p in (PACKAGE / "models").glob("*/task.py"))
    assert folders == registry.families()
    for name in folders:
        assert hasattr(registry.family_module(name), "build_task"), name


# A shape-suffixed name: ``q_BxTxNxD``, ``h_Bx4E``, ``logp_BJxV``, ``zimg_bxE``: parts joined by
# ``x``, each digits and/or capitals (letters written together multiply) or one lowercase letter
# (a per-device share); a lone lowercase part (``rk_i``) is an index, not a shape.
_SUFFIX = re.compile(
    r"^[A-Za-z][A-Za-z0-9]*?(?:_[A-Za-z0-9]+?)*?_((?:[0-9]*[A-Z]+|[0-9]+|[a-z])(?:x(?:[0-9]*[A-Z]+|[0-9]+|[a-z]))*)$"
)


def _legend() -> set[str]:
    """The letters of the "Shape suffixes" table of docs/architecture.md."""
    text = ARCHITECTURE.read_text()
    section = text[text.index("## Shape suffixes") :]
    rows = re.findall(r"^\| ([A-Z](?:, [A-Z])*) \|", section, re.M)
    return {letter for row in rows for letter in row.split(", ")}


def _shape_letters(name: str) -> set[str] | None:
    """The letters of ``name``'s shape suffix (lowercase ones as their capital), or ``None``."""
    m = _SUFFIX.match(name)
    if m is None or name.isupper():  # a constant, NUM_CLASSES
        return None
    parts = m.group(1).split("x")
    if len(parts) == 1 and parts[0].islower():
        return None
    return {c.upper() for c in m.group(1).replace("x", "") if c.isalpha()}


def _names_with_docstrings(tree: ast.Module):
    """``(name, lineno, docstrings in scope)`` for every identifier and every string constant that
    is one name (a dict key such as ``bank["image_MxE"]``), with the docstrings of the module and
    of each enclosing class and function."""

    def visit(node, docs):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            docs = [*docs, ast.get_docstring(node) or ""]
        names = []
        if isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value] if node.value.isidentifier() else []
        for name in names:
            yield name, node.lineno, docs
        for child in ast.iter_child_nodes(node):
            yield from visit(child, docs)

    yield from visit(tree, [ast.get_docstring(tree) or ""])


def test_shape_suffixes_follow_the_legend():
    """Every letter of a shape suffix is in the legend of docs/architecture.md, or introduced as
    ``X`` or ``X = ...`` (in double backquotes) in the docstring of the module or of an enclosing
    class or function."""
    legend = _legend()
    assert {"B", "E", "V"} <= legend
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, line, docs in _names_with_docstrings(ast.parse(path.read_text())):
            for letter in sorted((_shape_letters(name) or set()) - legend):
                intro = re.compile(rf"``{letter}(?: = [^`]+)?``")
                if not any(intro.search(doc) for doc in docs):
                    bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name} ({letter})")
    assert not bad, "shape letters outside the legend, not introduced:\n" + "\n".join(
        sorted(set(bad))
    )


def test_test_files_have_distinct_names():
    """The test folders are not packages, so pytest imports each file by its basename: two
    files of one name (tests/lm/test_x.py, tests/contrastive/test_x.py) fail to collect."""
    tests = pathlib.Path(__file__).resolve().parents[1]
    names = collections.Counter(p.name for p in tests.rglob("test_*.py"))
    assert not [name for name, n in names.items() if n > 1]


def test_no_merge_conflict_markers_are_left():
    """A conflicted merge committed as resolved leaves its markers in text that runs or reads
    fine around them (a README paragraph did); none may remain in the source, tests or docs."""
    root = PACKAGE.parent
    markers = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)
    files = [root / "README.md", *root.glob("docs/*.md")]
    for folder in ("jaxmodels", "tests", "experiments", "tpu_scripts", ".ci"):
        text = (".py", ".md", ".sh", "")  # "" for scripts such as .ci/run
        files += [p for p in (root / folder).rglob("*") if p.is_file() and p.suffix in text]
    bad = [str(p.relative_to(root)) for p in files if markers.search(p.read_text())]
    assert not bad, f"merge conflict markers in: {bad}"
