"""The package's import graph: no cycle (TYPE_CHECKING and function-level imports
included), no import below the first definition of a module, and no wing importing a
wing above it.

The wings, bottom-up (README "Layout"): the public leaves `errors`, `hooks`, `logs`;
`_core`; `_client`; `_attempt`; `_worker`; the hook plug-ins `tracing`, `metrics`; `app`;
the entry points `cli`, `testing`, `dashboard` (and the deprecated module paths); `_ops`;
the package root."""

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
                module_file = PKG / (sub.split(".", 1)[1].replace(".", "/") + ".py")
                out.add(sub if module_file.exists() else target)
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


WINGS: dict[str, int] = {
    "errors": 0, "hooks": 0, "logs": 0,
    "_core": 1,
    "_client": 2,
    "_attempt": 3,
    "_worker": 4,
    "tracing": 5, "metrics": 5,
    "app": 6,
    "cli": 7, "testing": 7, "dashboard": 7, "steps": 7, "state": 7, "worker": 7,
    "_ops": 8,
}  # fmt: skip
PUBLIC = {"errors", "hooks", "logs", "tracing", "metrics", "app", "cli", "testing",
          "dashboard", "steps", "state", "worker"}  # fmt: skip


def _wing(module: str) -> str:
    return module.split(".")[1]


def test_every_module_sits_in_a_wing() -> None:
    for mod in _graph():
        assert _wing(mod) in WINGS, f"{mod}: not in a wing (tests/test_layers.py WINGS)"
        assert _wing(mod) in PUBLIC or _wing(mod).startswith("_"), mod


def test_no_wing_imports_a_wing_above_it() -> None:
    for mod, deps in _graph().items():
        for dep in deps:
            assert dep != "stackshift_redis", f"{mod} imports the package root"
            low, high = WINGS[_wing(dep)], WINGS[_wing(mod)]
            assert low <= high, f"{mod} (wing {_wing(mod)}) imports {dep} from above"


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
    assert "stackshift_redis._core.namespace" in graph["stackshift_redis._client.client"]
    assert "stackshift_redis._attempt.waits" in graph["stackshift_redis._attempt.steps"]
