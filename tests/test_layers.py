"""The package's import graph has no cycle (TYPE_CHECKING and function-level imports
included), and no import sits below the first definition of a module."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "stackshift_redis"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["stackshift_redis", *parts])


def _imports(path: Path) -> set[str]:
    """Every stackshift_redis module `path` imports, wherever the import statement is."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("stackshift_redis")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("stackshift_redis"):
                continue
            for alias in node.names:  # `from . import waits` imports a module
                sub = f"{target}.{alias.name}"
                out.add(sub if (PKG / f"{sub.split('.', 1)[1]}.py").exists() else target)
    out.discard(me)
    return out


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in PKG.rglob("*.py") if p.name != "__init__.py"}


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep == "stackshift_redis":
                continue
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_module_imports_the_package_root_or_the_app_from_below() -> None:
    for mod, deps in _graph().items():
        assert "stackshift_redis" not in deps, f"{mod} imports the package root"
        # console scripts and the test seam may import the app
        entry_points = ("cli", "ops_cli", "ops_admin", "ops_target", "testing")
        if mod not in {f"stackshift_redis.{m}" for m in entry_points}:
            assert "stackshift_redis.app" not in deps or mod == "stackshift_redis.app", mod


def test_imports_are_at_the_top() -> None:
    for path in PKG.rglob("*.py"):
        body = ast.parse(path.read_text()).body
        seen_code = False
        for node in body:
            is_doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            is_import = isinstance(node, (ast.Import, ast.ImportFrom))
            is_type_block = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            if is_import or is_type_block:
                assert not seen_code, f"{path.name}:{node.lineno}: import below code"
            elif not is_doc:
                seen_code = True


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "stackshift_redis.core" in graph["stackshift_redis.client"]
    assert "stackshift_redis.waits" in graph["stackshift_redis.steps"]
