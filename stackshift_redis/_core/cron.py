"""Pure schedule arithmetic: validated cadences (a cron expression in an IANA time zone, or a
fixed interval), the ticks a schedule owes at a given server time, and per-tick jitter.

Cron expressions are parsed and evaluated by `cronsim` (the library behind Healthchecks.io,
Debian cron semantics); nothing here parses cron. In a time zone with daylight saving time a
schedule at a fixed local time fires once on both change days, as Debian cron does: a time
the clocks skip (02:30 on a spring-forward day in Europe/Berlin) fires when the clocks jump
(03:00), a time they repeat fires once (the first 02:30). Expressions whose minute or hour is
`*` (hourly, every 15 minutes) follow elapsed time instead. `every=` intervals are fixed
durations, aligned to the Unix epoch so every process computes the same ticks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from ..errors import InvalidArgumentError
from . import clock
from .records import Duration, millis

OVERLAPS = ("allow", "skip", "cancel_other")
CATCHUPS = ("latest", "skip", "all")
MAX_CATCHUP = 100  # catchup="all" fires at most this many missed ticks
MISFIRE_GRACE_MS = 60_000  # catchup="skip": a tick older than this when seen was missed
MIN_EVERY_MS = 1000


def _dt(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


@dataclass(frozen=True)
class Cadence:
    """When a schedule ticks: `cron` in `timezone`, or every `every_ms` milliseconds."""

    cron: str | None
    every_ms: int | None
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        """The IANA time zone."""
        return ZoneInfo(self.timezone)

    @property
    def signature(self) -> str:
        """Equal for equal cadences: an upsert that keeps it keeps the pending tick."""
        if self.cron is not None:
            return f"cron|{self.cron}|{self.timezone}"
        return f"every|{self.every_ms}"

    def next_after(self, now_ms: int) -> int:
        """The first tick strictly after `now_ms` (epoch ms)."""
        if self.every_ms is not None:
            return (now_ms // self.every_ms + 1) * self.every_ms
        assert self.cron is not None
        it = CronSim(self.cron, _dt(now_ms, self.zone))
        for _ in range(8):  # a repeated (DST) hour can yield a tick already passed
            tick = _ms(next(it))
            if tick > now_ms:
                return tick
        raise InvalidArgumentError(f"cron {self.cron!r} yields no tick after {now_ms}")

    def latest(self, now_ms: int, first_ms: int, limit: int) -> list[int]:
        """Up to `limit` most recent ticks in [first_ms, now_ms], oldest first."""
        if first_ms > now_ms or limit < 1:
            return []
        if self.every_ms is not None:
            last = now_ms // self.every_ms * self.every_ms
            lo = max(first_ms, last - (limit - 1) * self.every_ms)
            start = -(-lo // self.every_ms) * self.every_ms  # round up to a tick
            return list(range(start, last + 1, self.every_ms))
        assert self.cron is not None
        out: list[int] = []
        # reverse from just after now: cronsim yields ticks <= now, newest first
        for when in CronSim(self.cron, _dt(now_ms + 1, self.zone), reverse=True):
            tick = _ms(when)
            if tick < first_ms or len(out) >= limit:
                break
            out.append(tick)
        return out[::-1]


def make_cadence(cron: str | None, every: Duration | None, timezone: str | None) -> Cadence:
    """Validate `cron`/`every`/`timezone` (InvalidArgumentError naming the argument)."""
    if (cron is None) == (every is None):
        raise InvalidArgumentError("pass exactly one of cron= or every=")
    tz = "UTC" if timezone is None else timezone
    if not isinstance(tz, str) or not tz:
        raise InvalidArgumentError(f"timezone must be an IANA time zone name, not {tz!r}")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgumentError(f"unknown timezone {tz!r}: use an IANA name") from None
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, (int, float, timedelta)):
            raise InvalidArgumentError(f"every must be seconds or a timedelta, not {every!r}")
        if (every.total_seconds() if isinstance(every, timedelta) else every) <= 0:
            raise InvalidArgumentError(f"every must be a positive interval, not {every!r}")
        every_ms = millis(every, "every")
        if every_ms < MIN_EVERY_MS:
            raise InvalidArgumentError(f"every must be at least 1 second, not {every!r}")
        return Cadence(None, every_ms, tz)
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise InvalidArgumentError(f"invalid cron {cron!r}: use 5 fields (m h dom mon dow)")
    expr = " ".join(cron.split())
    try:
        next(CronSim(expr, datetime.fromtimestamp(clock.now_ms() / 1000, zone)))
    except (CronSimError, StopIteration) as exc:
        raise InvalidArgumentError(f"invalid cron {cron!r}: {exc or 'never fires'}") from None
    return Cadence(expr, None, tz)


def check_choice(what: str, value: object, choices: tuple[str, ...]) -> str:
    """`value` if it is one of `choices`, else InvalidArgumentError naming `what`."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value


def plan(cadence: Cadence, catchup: str, next_ms: int, now_ms: int) -> tuple[list[int], int]:
    """(ticks to fire now, the next fire time) for a schedule due at `next_ms`.

    The latest tick at or before now is the current one; earlier due ticks were missed
    (no worker ran). "latest" fires the current tick, "all" each due tick (the last 100),
    "skip" the current tick only when it is at most MISFIRE_GRACE_MS old.
    """
    if next_ms > now_ms:
        return [], next_ms
    limit = MAX_CATCHUP if catchup == "all" else 1
    ticks = cadence.latest(now_ms, next_ms, limit) or [next_ms]
    if catchup == "skip" and now_ms - ticks[-1] > MISFIRE_GRACE_MS:
        ticks = []
    return ticks, cadence.next_after(now_ms)


def jitter_ms(name: str, tick_ms: int, jitter: int) -> int:
    """A delay in [0, jitter] ms for this tick, the same in every process (hash-derived)."""
    if jitter <= 0:
        return 0
    digest = hashlib.blake2b(f"{name}\0{tick_ms}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (jitter + 1)
