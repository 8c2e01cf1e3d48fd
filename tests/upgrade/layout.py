"""Print the layout a fixture's dump holds, as Markdown for tests/upgrade/README.md: each key
shape (matched against `SHAPES` of the stackshift_redis.keys this checkout imports, so run
it with the release's own code) with its Redis type and count, and each run-hash field with
the number of runs holding it and its meaning (from this checkout's lua/README.md).

    PYTHONPATH=$PWD python tests/upgrade/layout.py --release 6707af1
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "upgrade")]

from loader import PLACEHOLDER, read_dump  # noqa: E402
from stackshift_redis.keys import SHAPES  # noqa: E402

_ROW = re.compile(r"^\|\s*(`[^|]+)\|\s*(.+?)\s*\|\s*$")


def shape_patterns() -> list[tuple[str, re.Pattern[str], int]]:
    """(shape name, regex over the key after the prefix, literal parts) per SHAPES entry;
    an argument matches up to the next ':' except the last, which takes the rest."""
    out = []
    for name, parts in SHAPES.items():
        pieces = []
        for i, p in enumerate(parts):
            if p.startswith("{"):
                pieces.append("(.*)" if i == len(parts) - 1 else "([^:]*)")
            else:
                pieces.append(re.escape(p))
        literal = sum(not p.startswith("{") for p in parts)
        out.append((name, re.compile("^" + ":".join(pieces) + "$"), literal))
    return out


def shape_of(key: str, patterns: list[tuple[str, re.Pattern[str], int]]) -> str:
    """The SHAPES entry of a key (the match with the most literal parts), or "?"."""
    found = [(lit, name) for name, rx, lit in patterns if rx.match(key)]
    return max(found)[1] if found else "?"


def field_meanings(readme: Path) -> dict[str, str]:
    """Run-hash field (s:*, t:* for the <...> forms) -> meaning, from lua/README.md's
    table under "## The run hash"."""
    text = readme.read_text()
    start = text.index("## The run hash")
    end = text.index("\n## ", start + 3)
    out: dict[str, str] = {}
    for line in text[start:end].splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        for name in re.findall(r"`([^`]+)`", m.group(1)):
            out[re.sub(r"<[^>]+>", "*", name)] = m.group(2)
    return out


def field_form(name: str) -> str:
    """A run-hash field as the README names it: `s:charge` -> `s:*`."""
    return re.sub(r"^(s|t|w|x):.*$", r"\1:*", name)


def render(release: str) -> str:
    dump = read_dump(release)
    patterns = shape_patterns()
    shapes: Counter[tuple[str, str]] = Counter()
    runs = 0
    fields: Counter[str] = Counter()  # runs holding the field
    occurrences: Counter[str] = Counter()
    for k in dump["keys"]:
        key = k["key"].removeprefix(PLACEHOLDER)
        shape = shape_of(key, patterns)
        shapes[(shape, k["type"])] += 1
        if shape == "run":
            runs += 1
            forms = Counter(field_form(f) for f, _ in k["value"])
            fields.update(forms.keys())
            occurrences.update(forms)
    meanings = field_meanings(ROOT / "lua" / "README.md")
    lines = [f"Key shapes ({len(dump['keys'])} keys; `SHAPES` in stackshift_redis/keys.py):", "",
             "| shape | parts | type | keys |", "|---|---|---|---|"]  # fmt: skip
    for (shape, kind), n in sorted(shapes.items()):
        parts = ":".join(SHAPES.get(shape, ("?",)))
        lines.append(f"| `{shape}` | `{parts}` | {kind} | {n} |")
    absent = sorted(set(SHAPES) - {s for s, _ in shapes})
    lines += ["", f"Shapes of SHAPES not in the dump: {', '.join(f'`{s}`' for s in absent)}.", ""]
    lines += [f"Run-hash fields ({runs} run hashes; meanings from lua/README.md):", "",
              "| field | runs | fields | meaning |", "|---|---|---|---|"]  # fmt: skip
    for name in sorted(fields, key=lambda f: (-fields[f], f)):
        meaning = meanings.get(name, "(not in lua/README.md)")
        lines.append(f"| `{name}` | {fields[name]} | {occurrences[name]} | {meaning} |")
    absent_fields = sorted(set(meanings) - set(fields))
    lines += ["", "Fields of lua/README.md in no run of the dump: "
              + ", ".join(f"`{f}`" for f in absent_fields) + "."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", required=True)
    print(render(parser.parse_args().release))


if __name__ == "__main__":
    main()
