"""The example tests in examples/ pass the way a user's project runs them: with only
pytest-asyncio (strict mode, explicit markers) or with only anyio's plugin. The main
suite also collects them directly (pyproject testpaths)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("path", "plugins"),
    [
        ("examples/test_shop.py", ["-p", "no:anyio", "-o", "asyncio_mode=strict"]),
        ("examples/test_shop_anyio.py", ["-p", "no:asyncio", "-W", "ignore::UserWarning"]),
    ],
)
def test_example_tests_pass_as_a_user_runs_them(path: str, plugins: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugins, path],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout
