"""Lua sources: lua/*.lua with their `-- @include name.lua` lines inlined.

Includes are inlined once each, dependencies first. `keys.lua` is not a file: it is the
table `K` rendered from keys.SHAPES, so key shapes are written in one place only.

The clock is one include, `now_ms.lua`. `source(name, clock_key=...)` renders a script for
a TestEnv: its `now_ms` (lua/testing/now_ms.lua) reads the virtual time from that key.
Production scripts are rendered without it and stay exactly the files in lua/.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from .keys import lua_keys

_INCLUDE = re.compile(r"^-- @include ([a-z_]+\.lua)\s*$")
_PACKAGE = Path(__file__).resolve().parent.parent  # stackshift_redis/
_VIRTUAL = {"keys.lua": lua_keys}


def lua_dir() -> Path:
    """The Lua sources: inside the wheel, or the repo's top-level lua/ in a checkout."""
    packaged = _PACKAGE / "lua"
    return packaged if packaged.is_dir() else _PACKAGE.parent / "lua"


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _virtual_clock(clock_key: str) -> str:
    """The TestEnv's `now_ms`, reading the virtual time from `clock_key`."""
    body = (lua_dir() / "testing" / "now_ms.lua").read_text()
    return f"local CLOCK_KEY = {_lua_string(clock_key)}\n{body}"


def _render(path: Path, seen: set[str], clock_key: str | None) -> list[str]:
    out: list[str] = []
    for line in path.read_text().splitlines():
        m = _INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        name = m.group(1)
        if name in seen:
            continue
        seen.add(name)
        if name == "now_ms.lua" and clock_key is not None:
            out.extend(_virtual_clock(clock_key).splitlines())
            continue
        if name in _VIRTUAL:
            out.extend(_VIRTUAL[name]().splitlines())
            continue
        lib = lua_dir() / "lib" / name
        if not lib.is_file():
            raise FileNotFoundError(f"{path.name}: missing include {name}")
        out.extend(_render(lib, seen, clock_key))
    return out


@cache
def source(name: str, clock_key: str | None = None) -> str:
    """The full text of lua/<name>.lua with its includes inlined (each once, deps first).
    With `clock_key` (TestEnv only), `now_ms()` reads the virtual time kept in that key."""
    return "\n".join(_render(lua_dir() / f"{name}.lua", set(), clock_key)) + "\n"


def script_names() -> list[str]:
    """Every atomic operation: the top-level lua/*.lua files."""
    return sorted(p.stem for p in lua_dir().glob("*.lua"))
