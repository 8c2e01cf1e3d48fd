"""Upgrades carry every in-flight run forward (issue 29): the fixture of each landed release
(tests/upgrade/releases/<commit>: a namespace holding runs in every state, dumped from a
Redis that the release's own code wrote) is loaded into a fresh namespace, then a worker of
this checkout migrates it and every run must finish as the manifest says, with no completed
step run twice and nothing left behind (tests/upgrade/check_fixture.py does the checking;
tests/upgrade/README.md says how a fixture is made)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import RedisServer
from upgrade.check_fixture import run_check

RELEASES = sorted(p.name for p in (Path(__file__).parent / "upgrade" / "releases").iterdir()
                  if (p / "dump.json").is_file())  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("release", RELEASES)
async def test_a_release_fixture_upgrades_and_every_run_finishes(
    redis_server: RedisServer, release: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = await run_check(redis_server.url, release, redis_server.is_cluster, timeout=180)
    out = capsys.readouterr().out
    assert ok, out
    assert "runs finished as expected" in out
