"""The layout's rules, checked on the source: shared folders never import a family, families
never import each other, no private name crosses a module, and module-level imports form no
cycle (docs/architecture.md)."""

import ast
import pathlib

import pytest

from jaxmodels import registry

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "jaxmodels"
SHARED = ("layers", "losses", "samplers", "data", "evaluate")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _family(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "models" else None


def test_shared_folders_never_import_a_family():
    bad = [
        f"{name}:{line} imports {target}"
        for name, path in MODULES.items()
        if name.split(".")[1:2] and name.split(".")[1] in SHARED
        for target, _, line in _imports(path)
        if target.startswith("jaxmodels.models")
    ]
    assert not bad, "\n".join(bad)


def test_families_never_import_each_other():
    bad = [
        f"{name}:{line} imports {target}"
        for name, path in MODULES.items()
        if _family(name)
        for target, _, line in _imports(path)
        if _family(target) and _family(target) != _family(name)
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
