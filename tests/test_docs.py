"""The documentation's code runs: every ```python block in docs/ is marked as tested
(```python {.test}) and executed here, so the docs cannot drift from the code.

The tested blocks of one page run in order in one module namespace (a page reads as one
program, like a doctest session), with top-level `await` allowed, in one event loop.
A page may define tests as a user writes them (`async def test_...()` taking no
argument): they are called after the page's blocks, as pytest would. Most pages test
their jobs with TestEnv (no Redis). A page whose blocks are marked
`.redis` talks to a real Redis: it gets the test session's server as `REDIS_URL` and is
skipped on the cluster (its `StackShift(redis_url=...)` names one server). Tracebacks
point at the page and line of the Markdown source.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
from helpers import CLUSTER

from stackshift_redis import StackShift

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
PAGES = sorted(DOCS.rglob("*.md"))


def _blocks(page: Path) -> list[tuple[int, str, str, set[str]]]:
    """(line of the code's first line, language, code, classes) of each fenced block."""
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        info = m["info"].strip()
        lang = info.split("{")[0].strip().split(" ")[0] if info else ""
        braces = re.search(r"\{([^}]*)\}", info)
        classes = set(re.findall(r"\.([\w-]+)", braces.group(1))) if braces else set()
        line = text.count("\n", 0, m.start("body")) + 1
        out.append((line, lang, m["body"], classes))
    return out


def _tested(page: Path) -> list[tuple[int, str, set[str]]]:
    return [(line, code, cls) for line, lang, code, cls in _blocks(page) if "test" in cls]


def _rel(page: Path) -> str:
    return str(page.relative_to(DOCS.parent))


def test_every_python_example_is_tested() -> None:
    assert PAGES, "docs/ has no pages"
    untested = [
        f"{_rel(page)}:{line}"
        for page in PAGES
        for line, lang, _, cls in _blocks(page)
        if lang in ("python", "py", "python3", "pycon") and "test" not in cls
    ]
    assert not untested, "python blocks not marked ```python {.test}: " + ", ".join(untested)


def test_the_harness_finds_the_examples() -> None:
    pages = [p for p in PAGES if _tested(p)]
    assert len(pages) >= 8 and sum(len(_tested(p)) for p in pages) >= 30


@pytest.mark.parametrize("page", [p for p in PAGES if _tested(p)], ids=_rel)
async def test_docs_page_examples_run(
    page: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _tested(page)
    if any("redis" in cls for _, _, cls in blocks):
        if CLUSTER:
            pytest.skip("its examples name one Redis server (REDIS_URL)")
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for line, code, _ in blocks:
            source = "\n" * (line - 1) + code  # line numbers of the .md file
            compiled = compile(source, _rel(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(compiled, namespace)  # the docs' own code, top-level await allowed
            if inspect.iscoroutine(result):
                await result
        tests = [
            fn for name, fn in namespace.items()
            if name.startswith("test_") and inspect.iscoroutinefunction(fn)
            and not inspect.signature(fn).parameters
        ]  # fmt: skip
        for fn in tests:
            await fn()
    finally:
        for value in namespace.values():
            if isinstance(value, StackShift):
                await value.close()
