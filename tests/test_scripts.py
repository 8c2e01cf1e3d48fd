"""Lua conventions: headers, declared keys, key rendering parity with keys.py, includes,
NOSCRIPT recovery; and a fakeredis run of the main flow."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from stackshift_redis import RunContext, StackShift
from stackshift_redis.keys import SHAPES, Keys, lua_keys
from stackshift_redis.luasrc import lua_dir, script_names, source

ROOT = Path(__file__).resolve().parent.parent


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
    for arg in {int(i) for i in re.findall(r"ARGV\[(\d+)\]", text)}:
        assert f"ARGV[{arg}]" in head or "ARGV[" in head, f"ARGV[{arg}] undocumented"


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
    for path in (ROOT / "stackshift_redis").glob("*.py"):
        if path.name == "keys.py":
            continue
        text = path.read_text()
        assert not re.search(r"""["']ss:""", text), f"{path.name} builds a key string"
        assert not re.search(r"\.prefix\s*\+|\{[\w.]*\.prefix\}", text), f"{path.name} builds keys"


async def test_lua_key_rendering_matches_keys_py(app: StackShift) -> None:
    k: Keys = app.keys
    for shape, parts in SHAPES.items():
        args = [f"a{i}" for i in range(sum(p.startswith("{") for p in parts))]
        script = lua_keys() + f"\nreturn K.{shape}(ARGV[1], unpack(ARGV, 2))"
        rendered = await app.redis.eval(script, 1, k.run("x"), k.prefix, *args)
        assert rendered.decode() == k.render(shape, *args), shape


def test_no_lua_call_outside_scripts_py() -> None:
    for path in (ROOT / "stackshift_redis").rglob("*.py"):
        if path.name == "scripts.py":
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
    for _ in range(20):
        if await run.status() == "completed":
            break
        await app.worker(concurrency=2, poll_interval=0.02, block_ms=50).run(burst=True)
    assert await run.result(timeout=1) == 2
    assert calls == ["a"]
