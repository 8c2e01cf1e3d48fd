"""Lua sources: lua/*.lua with their `-- @include name.lua` lines inlined.

Includes are inlined once each, dependencies first. `keys.lua` is not a file: it is the
table `K` rendered from keys.SHAPES, so key shapes are written in one place only.

`include_graph()` draws who inlines what (lua/README.md, "Include graph"); no chain may be
deeper than MAX_INCLUDE_DEPTH.

The clock is one include, `now_ms.lua`. `source(name, clock_key=...)` renders a script for
a TestEnv: its `now_ms` (lua/testing/now_ms.lua) reads the virtual time from that key.
Production scripts are rendered without it and stay exactly the files in lua/.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from .key_shapes import PLANS, SHAPES

_INCLUDE = re.compile(r"^-- @include ([a-z_]+\.lua)\s*$")
_PACKAGE = Path(__file__).resolve().parent.parent  # stackshift_redis/


def lua_keys() -> str:
    """The Lua table `K`: `K.<shape>(prefix, args...)` renders a key as `Keys` does
    (`K_esc` escapes a part as `escape`)."""
    lines = [
        "-- keys: rendered from stackshift_redis/_core/key_shapes.py SHAPES",
        "local K = {}",
        "local K_escaped = {}  -- part -> escaped part, within one script call",
        "local function K_esc(s)",
        "  local v = K_escaped[s]",
        "  if v then return v end",
        "  v = s",
        "  if string.find(s, ':', 1, true) or string.find(s, '%', 1, true) then",
        "    v = string.gsub(string.gsub(s, '%%', '%%25'), ':', '%%3A')",
        "  end",
        "  K_escaped[s] = v",
        "  return v",
        "end",
    ]
    for name, parts in SHAPES.items():
        args = [p[1:-1] for p in parts if p.startswith("{")]
        pieces: list[str] = []
        literal = ""
        for i, ((text, escaped), part) in enumerate(zip(PLANS[name], parts, strict=True)):
            sep = ":" if i < len(parts) - 1 else ""
            if text is None:
                if literal:
                    pieces.append(f"'{literal}'")
                pieces.append(f"K_esc({part[1:-1]})" if escaped else part[1:-1])
                literal = sep
            else:
                literal += text + sep
        if literal:
            pieces.append(f"'{literal}'")
        params = "".join(f", {a}" for a in args)
        lines.append(f"function K.{name}(p{params}) return {' .. '.join(['p', *pieces])} end")
    return "\n".join(lines)


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


_K_FUNCTION = re.compile(r"^function K\.([a-z_0-9]+)\(")


def _used_keys_only(lines: list[str]) -> list[str]:
    """The lines without the `K.<shape>` functions the script never calls: every function
    defined costs each call of the script (about 3 µs per call for the whole table)."""
    text = "\n".join(line for line in lines if not _K_FUNCTION.match(line))
    used = set(re.findall(r"\bK\.([a-z_0-9]+)\(", text))
    return [ln for ln in lines if not ((m := _K_FUNCTION.match(ln)) and m.group(1) not in used)]


@cache
def source(name: str, clock_key: str | None = None) -> str:
    """The full text of lua/<name>.lua with its includes inlined (each once, deps first),
    and of the table `K` only the key functions it calls.
    With `clock_key` (TestEnv only), `now_ms()` reads the virtual time kept in that key."""
    lines = _render(lua_dir() / f"{name}.lua", set(), clock_key)
    return "\n".join(_used_keys_only(lines)) + "\n"


MAX_INCLUDE_DEPTH = 10  # the longest include chain allowed: a deeper one is a decision
# (10 since send_event's body became lib/emit_event.lua, shared with transact.lua)


def _includes(path: Path) -> list[str]:
    return [m.group(1) for line in path.read_text().splitlines() if (m := _INCLUDE.match(line))]


def include_depth(name: str) -> int:
    """How many library levels a script (or `lib/<name>.lua`) inlines below itself."""
    lib = lua_dir() / "lib" / name
    path = lib if name.endswith(".lua") else lua_dir() / f"{name}.lua"
    deps = [d for d in _includes(path) if d not in _VIRTUAL and d != "now_ms.lua"]
    return max((1 + include_depth(d) for d in deps), default=0)


def _closure(path: Path, seen: set[str]) -> set[str]:
    for dep in _includes(path):
        if dep not in seen and dep not in _VIRTUAL:
            seen.add(dep)
            _closure(lua_dir() / "lib" / dep, seen)
    return seen


def include_graph() -> str:
    """lua/README.md's "Include graph" table: each script, the libraries it includes
    directly, how many it inlines in all, and its depth."""
    rows = ["| script | includes | inlined | depth |", "|---|---|---|---|"]
    for name in script_names():
        path = lua_dir() / f"{name}.lua"
        direct = ", ".join(d.removesuffix(".lua") for d in _includes(path)) or "-"
        inlined = len(_closure(path, set()) - set(_VIRTUAL))
        rows.append(f"| `{name}` | {direct} | {inlined} | {include_depth(name)} |")
    return "\n".join(rows)


def script_names() -> list[str]:
    """Every atomic operation: the top-level lua/*.lua files."""
    return sorted(p.stem for p in lua_dir().glob("*.lua"))


GRAPH_START, GRAPH_END = "<!-- include-graph:start -->", "<!-- include-graph:end -->"


def readme_with_graph(text: str) -> str:
    """lua/README.md's text with its include-graph section regenerated."""
    head, rest = text.split(GRAPH_START, 1)
    _, tail = rest.split(GRAPH_END, 1)
    return f"{head}{GRAPH_START}\n{include_graph()}\n{GRAPH_END}{tail}"


def write_readme_graph() -> None:
    """Regenerate lua/README.md's include graph (in a checkout)."""
    readme = lua_dir() / "README.md"
    readme.write_text(readme_with_graph(readme.read_text()))
