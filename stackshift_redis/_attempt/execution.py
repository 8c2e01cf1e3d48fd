"""One attempt of a run on a worker: its lease token, its memoized steps, and the writes
its steps make (all fenced by the lease token)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .._client.state import State
from .._core.namespace import Namespace
from .._core.records import Event, read_step, step_completed, step_failed
from .._core.serializer import dumps_checked, round_trip
from ..errors import InvalidArgumentError, LeaseLostError, NonRetriableError, PayloadError
from ..hooks import AttemptInput
from ..logs import run_extra
from .parking import CancelRequested, Parking

MISSING = object()  # lookup(): the step has no stored result yet
PATCH_PREFIX = "patched:"  # step records holding ctx.patched() answers
LEASE_TRUST = 0.5  # a step starts unchecked only within this share of the lease since renewal


@dataclass
class Execution:
    """One attempt of a run on this worker: what the handler's context reads and writes."""

    ns: Namespace
    state: State
    run_id: str
    job: str
    queue: str
    token: str
    attempt: int
    payload: Any
    event: Event | None
    steps: dict[str, dict[str, Any]]
    hook_input: AttemptInput
    lease_ms: int = 30_000
    confirmed_at: float = 0.0  # monotonic time the lease was last known held (request sent)
    cancel_requested: bool = False
    lost: bool = False
    finished: bool = False  # its outcome is being recorded: no lease to renew
    seen: dict[str, int] = field(default_factory=dict)
    schedule: str | None = None  # the schedule that started the run
    scheduled_at: datetime | None = None  # its tick
    pending: tuple[str, ...] = ()  # steps with a wait registered by an earlier attempt
    version: int = 1  # the job version the run is pinned to (ctx.version)
    used: set[str] = field(default_factory=set)  # stored step names reached by this execution
    unflushed: list[tuple[str, bool]] = field(default_factory=list)  # patch answers to store
    parking: Parking = field(init=False)

    def __post_init__(self) -> None:
        hooks, hook_input = self.ns.hooks, self.hook_input

        def on_park(step: str, kind: str) -> None:
            if hooks:
                hooks.suspended(hook_input, step, kind)

        self.parking = Parking(self.ns, self.run_id, self.token, self.pending, on_park)

    @property
    def log_extra(self) -> dict[str, Any]:
        """The `extra` of a log line about this attempt: run_id, job, attempt, queue."""
        return run_extra(self.run_id, self.job, self.attempt, self.queue)

    def unique(self, name: str) -> str:
        """The step's stored name: `name`, then `name#2`, `name#3` within one execution."""
        if not isinstance(name, str) or not name or len(name) > 256:
            raise NonRetriableError(f"invalid step name {name!r}")
        n = self.seen.get(name, 0) + 1
        self.seen[name] = n
        key = name if n == 1 else f"{name}#{n}"
        self.used.add(key)
        return key

    def patched(self, patch_id: object) -> bool:
        """`ctx.patched(id)`: the answer recorded in the run, else True when this execution
        has replayed every step the run had recorded (new ground: the patched code runs),
        False when stored steps or registered waits lie ahead (the run went past this point
        without the patch).
        The answer is stored (as step `PATCH_PREFIX + id`) before the run's next step."""
        if not isinstance(patch_id, str) or not 0 < len(patch_id) <= 200:
            raise InvalidArgumentError(f"patch id must be a non-empty str, not {patch_id!r}")
        key = PATCH_PREFIX + patch_id
        rec = self.steps.get(key)
        if rec is not None and rec.get("status") == "completed":
            return bool(rec.get("result"))
        # ahead: a step stored, or a wait registered (pending), that this execution has not
        # reached yet: an earlier attempt went past this point without the patch
        ahead = any(k not in self.used and not k.startswith(PATCH_PREFIX) for k in self.steps)
        ahead = ahead or any(k not in self.used for k in self.pending)
        self.steps[key] = {"status": "completed", "result": not ahead}
        self.unflushed.append((key, not ahead))
        return not ahead

    async def flush_patches(self) -> None:
        """Store the patch answers given since the last step (fenced by the lease)."""
        while self.unflushed:
            key, value = self.unflushed[0]
            data = self.ns.serializer.dumps(value)
            await self.ns.scripts_of(self.run_id).record_step(
                self.run_id, self.token, key, step_completed(data), "patched"
            )
            self.unflushed.pop(0)

    def replayed(self, name: object) -> bool:
        """True when the next step called `name` has a stored outcome (a durable wait
        returns it without running again)."""
        if not isinstance(name, str):
            return False
        n = self.seen.get(name, 0) + 1
        return (name if n == 1 else f"{name}#{n}") in self.steps

    def lookup_record(self, name: str) -> tuple[str, dict[str, Any] | None]:
        """(stored name, its record if any); raises when a cancel is pending and the step
        has not completed."""
        key = self.unique(name)
        if self.parking.parked:  # a branch still running after the attempt parked the run
            raise self.parking.stopped(key)
        rec = self.steps.get(key)
        if self.cancel_requested and (rec is None or rec["status"] != "completed"):
            raise CancelRequested(f"run {self.run_id} cancelled", run_id=self.run_id)
        return key, rec

    def lookup(self, name: str) -> tuple[str, Any]:
        """(stored name, memoized result or MISSING)."""
        key, rec = self.lookup_record(name)
        if rec is not None and rec["status"] == "completed":
            return key, rec.get("result")
        return key, MISSING

    def confirmed(self, sent_at: float) -> None:
        """The lease was renewed by a request sent at `sent_at` (monotonic)."""
        self.confirmed_at = max(self.confirmed_at, sent_at)

    async def ensure_lease(self) -> None:
        """Before a step starts its side effect: the lease must be known to be held. Within
        LEASE_TRUST of the lease since the last renewal it is; past that (the process was
        paused: SIGSTOP, a long GC, a VM freeze) ask Redis, renewing it, and raise
        LeaseLostError when another worker has taken the run over."""
        if time.monotonic() - self.confirmed_at < self.lease_ms / 1000 * LEASE_TRUST:
            return
        sent = time.monotonic()
        held = [(self.run_id, self.token)]
        [state] = await self.ns.scripts_of(self.run_id).renew(self.queue, held, self.lease_ms)
        if state == "lost":
            self.lost = True
            raise LeaseLostError(f"run {self.run_id}: lease lost while this worker was paused")
        self.confirmed(sent)
        if state == "cancel":
            self.cancel_requested = True

    async def record(self, key: str, value: Any) -> Any:
        """Store a completed step; returns the value as a later attempt will see it."""
        try:  # read back before it is stored: the check costs no extra work
            data, stored = round_trip(self.ns.serializer, value, f"step {key!r} result")
        except PayloadError as exc:
            raise NonRetriableError(str(exc)) from exc
        await self.flush_patches()
        cancel = await self.ns.scripts_of(self.run_id).record_step(
            self.run_id, self.token, key, step_completed(data), "step_completed"
        )
        self.steps[key] = {"status": "completed", "result": stored}
        if cancel:
            self.cancel_requested = True
        return stored

    async def record_failure(self, key: str, exc: BaseException) -> None:
        """Store a failed step (the attempt fails with it)."""
        error = {"type": type(exc).__name__, "message": str(exc)}
        await self.flush_patches()
        await self.ns.scripts_of(self.run_id).record_step(
            self.run_id, self.token, key, step_failed(error), "step_failed"
        )

    async def set_progress(self, value: Any) -> None:
        """Record the run's progress (any serializable value)."""
        data = dumps_checked(self.ns.serializer, value, "progress")
        await self.ns.scripts_of(self.run_id).progress(self.run_id, self.token, data)


def parse_steps(raw: list[Any], ns: Namespace) -> dict[str, dict[str, Any]]:
    """Step records from the take reply's flat [name, record, ...] list."""
    return {raw[i].decode(): read_step(raw[i + 1], ns.serializer) for i in range(0, len(raw), 2)}
