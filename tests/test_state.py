"""State store: values, counters, markers and locks, on real Redis and on fakeredis."""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from helpers import RedisServer, wait_for

from stackshift_redis import LockError, PayloadError, StackShift
from stackshift_redis._client.state import Runner, State, SyncState
from stackshift_redis._core.luasrc import lua_dir
from stackshift_redis.errors import InvalidArgumentError

T = TypeVar("T")


def _state_key(app: StackShift, name: str) -> str:
    """The key of state `name` (on the partition its name routes to)."""
    return app._core.name_keys(name).state(name)


@pytest.fixture(params=["real", "fake"])
def st_app(request: pytest.FixtureRequest) -> StackShift:
    """The same test on the real Redis and on fakeredis."""
    app: StackShift = request.getfixturevalue("app" if request.param == "real" else "fake_app")
    return app


async def test_set_get_delete_with_ttl(st_app: StackShift) -> None:
    st, r, sk = st_app.state, st_app.redis, functools.partial(_state_key, st_app)
    values: list[Any] = [
        {"a": [1, 2.5, None]},
        "text",
        "123",
        b"\x00bin",
        0.5,
        True,
        False,
        None,
        [],
        datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        0,
        7,
        48,
        57,
        -1,
        2**62,
        -(2**63),
    ]
    for i, value in enumerate(values):
        await st.set(f"v{i}", value)
        assert await st.get(f"v{i}", default="missing") == value
        assert type(await st.get(f"v{i}")) is type(value)
    await st.set("p", 0.25, ttl=10)
    assert 9000 < await r.pttl(sk("p")) <= 10000
    await st.set("p", 0.5, ttl=timedelta(minutes=1))
    assert 59000 < await r.pttl(sk("p")) <= 60000
    await st.set("p", 0.75)  # no ttl: the old expiry is cleared
    assert await r.pttl(sk("p")) == -1
    assert await st.get("p") == 0.75
    assert await st.delete("p") is True
    assert await st.delete("p") is False
    assert await st.get("p") is None
    assert await st.get("p", default=3) == 3


async def test_short_ttl_expires(st_app: StackShift) -> None:
    await st_app.state.set("short", "x", ttl=0.05)
    await asyncio.sleep(0.1)
    assert await st_app.state.get("short", "gone") == "gone"


async def test_incr_ttl_on_creation_only(st_app: StackShift) -> None:
    st, r, sk = st_app.state, st_app.redis, functools.partial(_state_key, st_app)
    assert await st.incr("c", ttl=10) == 1
    assert 9000 < await r.pttl(sk("c")) <= 10000
    await r.pexpire(sk("c"), 5000)
    assert await st.incr("c", 5, ttl=100) == 6
    assert 4000 < await r.pttl(sk("c")) <= 5000  # unchanged by later calls
    assert await st.incr("c", -10) == -4
    assert await st.get("c") == -4
    assert await st.incr("plain") == 1
    assert await r.pttl(sk("plain")) == -1
    await st.set("n", 41)  # ints set() stores are counters too
    assert await st.incr("n") == 42
    await st.set("word", "hi")
    with pytest.raises(InvalidArgumentError):
        await st.incr("word")
    assert await st.get("word") == "hi"


async def test_incr_is_atomic(st_app: StackShift) -> None:
    results = await asyncio.gather(*(st_app.state.incr("hits", ttl=60) for _ in range(50)))
    assert sorted(results) == list(range(1, 51))
    assert await st_app.state.get("hits") == 50


async def test_mark_first_time_only(st_app: StackShift) -> None:
    st, r, sk = st_app.state, st_app.redis, functools.partial(_state_key, st_app)
    firsts = await asyncio.gather(*(st.mark("welcome:u1", ttl=86400) for _ in range(20)))
    assert firsts.count(True) == 1
    assert await st.mark("welcome:u1", ttl=timedelta(days=1)) is False
    assert 86_399_000 < await r.pttl(sk("welcome:u1")) <= 86_400_000
    assert await st.get("welcome:u1") is True
    assert await st.mark("short", ttl=0.05) is True
    await asyncio.sleep(0.1)
    assert await st.mark("short", ttl=0.05) is True


async def test_lock_mutual_exclusion(st_app: StackShift) -> None:
    st = st_app.state
    holders = max_holders = done = 0

    async def contender() -> None:
        nonlocal holders, max_holders, done
        async with st.lock("invoice:42", ttl=5, wait=8) as lock:
            assert lock.held
            holders += 1
            max_holders = max(max_holders, holders)
            await asyncio.sleep(0.005)
            holders -= 1
            done += 1

    await asyncio.gather(*(contender() for _ in range(20)))
    assert (done, max_holders) == (20, 1)
    assert await st_app.redis.exists(st_app._core.name_keys("invoice:42").lock("invoice:42")) == 0


async def test_lock_error_when_not_acquired_and_backoff(
    st_app: StackShift, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = st_app.state
    async with st.lock("busy", ttl=5):
        calls = 0
        real_set = st_app.redis.set

        async def counting_set(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await real_set(*args, **kwargs)

        monkeypatch.setattr(st_app.redis, "set", counting_set)
        t0 = time.monotonic()
        with pytest.raises(LockError):
            async with st.lock("busy", wait=0.3):
                pytest.fail("acquired a held lock")
        elapsed = time.monotonic() - t0
        monkeypatch.undo()
        assert 0.3 <= elapsed < 3.0  # gives up after `wait` (generous: a loaded machine)
        assert 2 <= calls <= 12  # retried, backing off from 5 ms to 100 ms: no busy spin
        with pytest.raises(LockError):
            await st.lock("busy", wait=0).acquire()


async def test_token_checked_release(st_app: StackShift) -> None:
    st, r, key = st_app.state, st_app.redis, st_app._core.name_keys("job").lock("job")
    a = st.lock("job", ttl=5, wait=0)
    with pytest.raises(LockError, match="lost"):
        async with a:
            await r.pexpire(key, 1)  # A's lock expires (e.g. A stalled longer than its TTL)
            await asyncio.sleep(0.01)
            async with st.lock("job", ttl=5, wait=1) as b:
                pass  # B holds it now; A exits while B holds it
            assert await r.get(key) is None  # B released its own lock fine
            b2 = await _hold(st, "job")
    assert await r.get(key) == b2.token.encode()  # A's release did not delete B's lock
    assert a.lost and not await a.release()
    assert await b2.release() is True
    assert await r.exists(key) == 0
    assert b.token != b2.token != a.token


async def _hold(st: State, name: str) -> Any:
    lock = st.lock(name, ttl=5, wait=1)
    await lock.acquire()
    return lock


async def test_lock_extended_while_held(st_app: StackShift) -> None:
    st, r, key = st_app.state, st_app.redis, st_app._core.name_keys("long").lock("long")
    # TTLs of a second: a loaded machine's event loop can stall for a fifth of one
    async with st.lock("long", ttl=1, wait=0) as lock:
        for _ in range(5):  # 2.5 s, two and a half TTLs
            await asyncio.sleep(0.5)
            assert await r.get(key) == lock.token.encode()
            assert 0 < await r.pttl(key) <= 1000
        with pytest.raises(LockError):
            await st.lock("long", wait=0).acquire()
    assert await r.exists(key) == 0
    assert not lock.held and not lock.lost


async def test_lock_lost_while_held(st_app: StackShift) -> None:
    st, r, key = st_app.state, st_app.redis, st_app._core.name_keys("taken").lock("taken")
    with pytest.raises(LockError, match="lost"):
        async with st.lock("taken", ttl=0.15, wait=0) as lock:
            await r.set(key, "someone-else")
            await wait_for(lambda: lock.lost, 5)  # the extension notices the loss
            assert lock.lost and not lock.held
    assert await r.get(key) == b"someone-else"
    # an error in the block wins; the loss is noted on it
    with pytest.raises(KeyError) as info:
        async with st.lock("taken2", ttl=5, wait=0):
            await r.delete(st_app._core.name_keys("taken2").lock("taken2"))
            raise KeyError("body")
    assert any("lost" in note for note in info.value.__notes__)


async def test_bad_input_writes_nothing(make_app: Callable[..., StackShift]) -> None:
    app = make_app(max_payload_bytes=64)
    st = app.state
    for bad in ["", "x" * 513, 5, None, b"name"]:
        with pytest.raises(InvalidArgumentError):
            await st.set(bad, 1)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await st.get(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await st.incr(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await st.mark(bad, ttl=1)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await st.delete(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            st.lock(bad)  # type: ignore[arg-type]
    await st.set("x" * 512, 1)  # the longest valid name
    for value in [object(), {1, 2}, "y" * 100, 2**70]:
        with pytest.raises(PayloadError):
            await st.set("bad", value)
    for ttl in [0, -1, "10", timedelta(seconds=-1)]:
        with pytest.raises(InvalidArgumentError):
            await st.set("bad", 1, ttl=ttl)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await st.incr("bad", ttl=ttl)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            await st.mark("bad", ttl=ttl)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError):
            st.lock("bad", ttl=ttl)  # type: ignore[arg-type]
    for amount in [1.5, True, "1", 2**63]:
        with pytest.raises(InvalidArgumentError):
            await st.incr("bad", amount)  # type: ignore[arg-type]
    assert (
        await app.redis.exists(
            app._core.name_keys("bad").state("bad"), app._core.name_keys("bad").lock("bad")
        )
        == 0
    )
    await app.redis.set(app._core.name_keys("raw").state("raw"), b"\xc1garbage")
    with pytest.raises(PayloadError):
        await st.get("raw")


@pytest.fixture
def loop_runner() -> Iterator[Runner]:
    """A runner executing coroutines on a background event loop, as the sync facade does."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    yield run
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_sync_state(redis_server: RedisServer, loop_runner: Runner) -> None:
    app = redis_server.app()
    st = SyncState(State(app._core), loop_runner)
    try:
        st.set("k", {"a": 1}, ttl=10)
        assert st.get("k") == {"a": 1}
        assert st.get("missing", 0) == 0
        assert st.incr("n", 2, ttl=10) == 2
        assert st.mark("m", ttl=10) is True
        assert st.mark("m", ttl=10) is False
        assert st.delete("k") is True
        with st.lock("L", ttl=1, wait=0) as lock:
            time.sleep(1.5)  # longer than the TTL: the background loop extends it
            assert lock.held
            with pytest.raises(LockError):
                st.lock("L", wait=0.05).acquire()
        assert not lock.held
        assert loop_runner(app.redis.exists(app._core.name_keys("L").lock("L"))) == 0
    finally:
        loop_runner(redis_server.close_app(app))


@pytest.mark.parametrize("name", ["state_incr", "lock_release", "lock_extend"])
def test_lua_headers(name: str) -> None:
    lines = (lua_dir() / f"{name}.lua").read_text().splitlines()
    assert lines[0].startswith(f"-- {name}: ")
    header = "\n".join(line for line in lines if line.startswith("-- "))
    assert re.search(r"^-- KEYS\[1\] \w+ +keys\.\w+\(", header, re.M)
    assert re.search(r"^-- ARGV\[1\] ", header, re.M)
    assert re.search(r"^-- Returns .*Errors: ", header, re.M)
