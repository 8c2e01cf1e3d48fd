"""Lua conventions: headers, declared keys, key rendering parity with keys.py, includes,
NOSCRIPT recovery; and a fakeredis run of the main flow."""

from __future__ import annotations

import ast
import inspect
import re
import time
from pathlib import Path
from typing import Any

import pytest

from stackshift_redis import RunContext, StackShift
from stackshift_redis._core.keys import SHAPES, Keys
from stackshift_redis._core.luasrc import (
    MAX_INCLUDE_DEPTH,
    include_depth,
    lua_dir,
    lua_keys,
    readme_with_graph,
    script_names,
    source,
)

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "lua"


@pytest.mark.parametrize("name", script_names())
def test_every_script_has_a_header_naming_its_keys(name: str) -> None:
    text = (lua_dir() / f"{name}.lua").read_text()
    header = [line for line in text.splitlines() if line.startswith("--")]
    assert header and header[0].startswith(f"-- {name}: "), "first line: '-- name: what it does'"
    head = "\n".join(header)
    assert "Returns" in head, "the header says what the script returns"
    used = {int(i) for i in re.findall(r"KEYS\[(\d+)\]", text.split("-- @include")[-1])}
    for i in sorted(used):
        assert re.search(rf"-- KEYS\[{i}\] ", head), f"KEYS[{i}] is used but not documented"
    code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    fixed, forms = _argv_documented(head)
    for arg in _argv_used(code):
        if isinstance(arg, int):
            assert _argv_covered(arg, fixed, forms), f"ARGV[{arg}] is used but not documented"
        else:
            a, b = arg
            assert arg in forms, f"ARGV[{a} + {b} * i] is used but ARGV[{a}+{b}i] is undocumented"


# An index expression inside ARGV[...]: a constant `7`, or a repeating form in i such as
# `4+2i`, `2i`, `2i+1` (in the header) or `4 + 2 * i`, `2 * i + 1` (in the code).
_ARGV = re.compile(r"ARGV\[([^\]]*)\]")
_LINEAR = re.compile(r"^(?:(\d+)\+)?(\d*)\*?i(?:\+(\d+))?$")


def _argv_index(expr: str) -> int | tuple[int, int] | None:
    """7 -> 7; 'a+bi' (or 'a + b * i', 'bi+a', 'bi', 'i') -> (a, b); else None."""
    expr = re.sub(r"\s+", "", expr)
    if expr.isdigit():
        return int(expr)
    m = _LINEAR.match(expr)
    if m is None or (m.group(1) and m.group(3)):
        return None
    return int(m.group(1) or m.group(3) or 0), int(m.group(2) or 1)


def _argv_used(code: str) -> list[int | tuple[int, int]]:
    """Every ARGV index the code reads, constants and repeating forms (sorted, unique)."""
    found = {_argv_index(e) for e in _ARGV.findall(code)}
    return sorted((f for f in found if f is not None), key=str)


def _argv_documented(head: str) -> tuple[set[int], set[tuple[int, int]]]:
    """ARGV indices the header documents: constants, and repeating forms (a, b) for
    `ARGV[a+bi]`, which document a + b*i for i = 1, 2, ... (the first item is i = 1)."""
    fixed: set[int] = set()
    forms: set[tuple[int, int]] = set()
    for line in head.splitlines():
        for expr in _ARGV.findall(line):
            index = _argv_index(expr)
            if isinstance(index, int):
                fixed.add(index)
            elif index is not None:
                forms.add(index)
    return fixed, forms


def _argv_covered(index: int, fixed: set[int], forms: set[tuple[int, int]]) -> bool:
    return index in fixed or any(index > a and (index - a) % b == 0 for a, b in forms)


def test_argv_header_check_accepts_repeating_forms_and_catches_gaps() -> None:
    # start.lua's shape: ARGV[1..8] fixed, then triples ARGV[6+3i], ARGV[7+3i], ARGV[8+3i]
    head = "-- ARGV[1] a .. ARGV[8] h\n-- ARGV[6+3i] id_i  ARGV[7+3i] x_i  ARGV[8+3i] y_i"
    fixed, forms = _argv_documented(head)
    assert fixed == {1, 8} and forms == {(6, 3), (7, 3), (8, 3)}
    fixed |= set(range(2, 8))
    assert all(_argv_covered(i, fixed, forms) for i in range(1, 30))
    assert not _argv_covered(0, fixed, forms)
    assert not _argv_covered(9, fixed, {(7, 3), (8, 3)})  # ARGV[6+3i] missing: 9, 12, ...
    # release.lua's shape: pairs from ARGV[2]
    fixed, forms = _argv_documented("-- ARGV[1] group  ARGV[2i] id_i  ARGV[2i+1] run_i")
    assert fixed == {1} and forms == {(0, 2), (1, 2)}
    assert all(_argv_covered(i, fixed, forms) for i in range(1, 9))
    fixed, forms = _argv_documented("-- ARGV[1] a  ARGV[2] b  ARGV[4] d")
    assert not _argv_covered(3, fixed, forms)  # the old check passed any documented ARGV
    code = "local x = ARGV[3] .. ARGV[6 + 3 * i] .. ARGV[2 * i + 1] .. ARGV[#ARGV]"
    assert _argv_used(code) == [(1, 2), (6, 3), 3]


@pytest.mark.parametrize("path", sorted((lua_dir() / "lib").glob("*.lua")), ids=lambda p: p.name)
def test_every_lib_file_defines_one_documented_function(path: Path) -> None:
    text = path.read_text()
    assert text.startswith(f"-- {path.stem}: ")
    assert re.findall(r"^local function (\w+)", text, re.M) == [path.stem]


@pytest.mark.parametrize("name", script_names())
def test_includes_resolve_once(name: str) -> None:
    rendered = source(name)
    assert "-- @include" not in rendered
    defs = re.findall(r"^local function (\w+)", rendered, re.M)
    assert len(defs) == len(set(defs))


def test_no_key_strings_outside_keys_py() -> None:
    for path in (ROOT / "stackshift_redis").rglob("*.py"):
        if path.name == "keys.py":
            continue
        text = path.read_text()
        assert not re.search(r"""["']ss:""", text), f"{path.name} builds a key string"
        assert not re.search(r"\.prefix\s*\+|\{[\w.]*\.prefix\}", text), f"{path.name} builds keys"


async def test_lua_key_rendering_matches_keys_py(app: StackShift) -> None:
    k: Keys = app._core.keys
    for shape, parts in SHAPES.items():
        args = [f"a{i}" for i in range(sum(p.startswith("{") for p in parts))]
        script = lua_keys() + f"\nreturn K.{shape}(ARGV[1], unpack(ARGV, 2))"
        rendered = await app.redis.eval(script, 1, k.run("x"), k.prefix, *args)
        assert rendered.decode() == k.render(shape, *args), shape


def test_no_lua_call_outside_scripts_py() -> None:
    door = ROOT / "stackshift_redis" / "_core" / "scripts"  # the one door to Lua
    for path in (ROOT / "stackshift_redis").rglob("*.py"):
        if door in path.parents:
            continue
        text = path.read_text()
        for needle in (".eval(", "evalsha", "register_script", "scripts.call(", "queue_call("):
            assert needle not in text, f"{path.name} calls Lua directly ({needle})"


async def test_script_flush_is_invisible_to_users(app: StackShift) -> None:
    app.job("j", lambda ctx: None)
    await app.start("j")
    await app.redis.script_flush()  # on a cluster: every primary
    run = await app.start("j")  # redis-py reloads the script on NOSCRIPT
    assert await run.status() == "queued"


async def test_main_flow_on_fakeredis(fake_app: StackShift) -> None:
    app = fake_app
    calls: list[str] = []

    @app.job("flow", retries=1, backoff=0.01)
    async def flow(ctx: RunContext) -> Any:
        a = await ctx.step.run("a", lambda: calls.append("a") or 1)
        await ctx.step.sleep("nap", 0.05)
        if ctx.attempt == 1:
            raise RuntimeError("retry me")
        return a + 1

    run = await app.start("flow", idempotency_key="k")
    assert (await app.start("flow", idempotency_key="k")).deduplicated
    worker = app.worker(concurrency=2, poll_interval=0.02, block_ms=50)
    await worker.run(burst=True)  # exits once nothing is due; the sleep/retry may remain
    deadline = time.monotonic() + 20  # the sleep and the retry's backoff become due
    while await run.status() != "completed" and time.monotonic() < deadline:
        await app.worker(concurrency=2, poll_interval=0.02, block_ms=50).run(burst=True)
    assert await run.result(timeout=1) == 2
    assert calls == ["a"]


def test_one_name_per_key() -> None:
    """Each key has one name: its SHAPES entry, its Keys method and its Lua `K` function."""
    methods = {n for n, v in vars(Keys).items() if callable(v) and not n.startswith("_")}
    assert methods - {"render"} == set(SHAPES)
    for path in LUA.rglob("*.lua"):
        text = path.read_text()
        for name in re.findall(r"\bK\.([a-z_]+)\(", text):
            assert name in SHAPES, f"{path.name}: K.{name} is no key shape"
        for name in re.findall(r"\bkeys\.([a-z_]+)\(", text):  # header lines cite Keys methods
            assert name in SHAPES, f"{path.name}: keys.{name}() is no Keys method"


def test_one_name_per_script() -> None:
    """A Scripts method is named after the lua/ file it calls (`<name>_call` prepares one)."""
    calls: dict[str, set[str]] = {}
    for path in (ROOT / "stackshift_redis" / "_core" / "scripts").glob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call):
                    for arg in node.args[:2]:
                        if isinstance(arg, ast.Constant) and (LUA / f"{arg.value}.lua").is_file():
                            calls.setdefault(fn.name, set()).add(arg.value)
    assert calls, "no script call found"
    for method, scripts in calls.items():
        assert scripts == {method.removesuffix("_call")}, f"Scripts.{method} calls {scripts}"


def test_each_request_is_named_after_its_script() -> None:
    """A request dataclass (scripts/requests.py) is `<Script>Request` for the script whose
    Scripts method takes it."""
    from stackshift_redis._core.scripts import Scripts, requests

    names = [n for n in vars(requests) if n.endswith("Request")]
    assert names
    for name in names:
        script = re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Request")).lower()
        assert (LUA / f"{script}.lua").is_file(), f"{name}: no lua/{script}.lua"
        method = getattr(Scripts, script, None) or getattr(Scripts, f"{script}_call")
        assert name in str(inspect.signature(method)), f"Scripts.{script} does not take {name}"


def test_the_include_graph_is_drawn_and_bounded() -> None:
    readme = (LUA / "README.md").read_text()
    assert readme == readme_with_graph(readme), (
        "lua/README.md's include graph is out of date: run "
        'python -c "from stackshift_redis._core import luasrc; luasrc.write_readme_graph()"'
    )
    for name in script_names():
        assert include_depth(name) <= MAX_INCLUDE_DEPTH, f"{name}.lua includes too deep"
