"""Operator actions of the dashboard: pause/resume a queue, bulk cancel/retry with a
confirmation showing the count, schedule pause/resume/trigger/delete. Every one is a POST
under the same CSRF and read-only rules as the run actions (`Dashboard.wrap`).

`POST /runs/bulk` (form: `action` cancel | retry, `job`, `status` (repeatable),
`created_after`, `created_before`) first answers a confirmation page with the number of
matching runs (`Control.count_runs`: one ZLEXCOUNT per status); that page posts again
with `confirm=yes`, and the runs are changed in bounded batches (`Control`: one `bulk`
script per batch of at most 200 runs and about 2 ms of Redis time). A request acts for
about PART_S seconds; a larger set answers a progress page ("retried 12,000 of 100,000")
that posts the next part with its cursor (static/autosubmit.js, or its Continue button)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from .._client.control import CANCELLABLE, RETRIABLE
from ..errors import InvalidArgumentError

SCHEDULE_VERBS = ("pause", "resume", "trigger", "delete")
PART_S = 1.0  # a bulk action's time per request; the progress page posts the next part


def parse_when(value: str, what: str) -> datetime | None:
    """A date/time form field (ISO, or an <input type=datetime-local>; naive: UTC)."""
    value = value.strip()
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgumentError(f"{what}: {value!r} is not an ISO date/time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def job_names(client: Any) -> list[str]:
    """Jobs workers published (HGETALL of the job map), sorted."""
    found = await client._core.redis.hgetall(client._core.keys.jobs())
    return sorted(k.decode() if isinstance(k, bytes) else str(k) for k in found)


async def search_run(client: Any, text: str, jobs: list[str]) -> str | None:
    """A run id that exists, or the run an idempotency key of one of `jobs` points to.
    Cost: one EXISTS, then one GET per job (<= 200) and partition in a pipeline."""
    ns = client._core
    if len(text) <= 256 and await ns.redis.exists(ns.keys_of(text).run(text)):
        return text
    jobs = [j for j in jobs if j][:200]
    async with ns.redis.pipeline(transaction=False) as pipe:
        for j in jobs:
            for keys in ns.part_keys:  # idempotency keys are kept per partition
                pipe.get(keys.idem(j, text))
        ids = await pipe.execute() if jobs else []
    for i in ids:
        if i is not None:
            return str(i.decode() if isinstance(i, bytes) else i)
    return None


class Pages(Protocol):
    """What the actions use of web.Dashboard (web imports this module, not the reverse)."""

    client: Any

    def page(self, request: Request, name: str, code: int = 200, **ctx: Any) -> Response: ...

    def error(self, request: Request, status: int, title: str, detail: str) -> Response: ...

    def redirect(self, request: Request, path: str, msg: str | None = None) -> Response: ...


class Ops:
    """The operator actions of one dashboard."""

    def __init__(self, d: Pages) -> None:
        self.d = d

    async def queue(self, request: Request) -> Response:
        """POST /queues/{name}/pause|resume."""
        name, verb = request.path_params["name"], request.path_params["verb"]
        if verb not in ("pause", "resume"):
            return self.d.error(request, 404, "Not found", f"No queue action {verb!r}.")
        client = self.d.client
        changed = await (client.pause_queue(name) if verb == "pause" else client.resume_queue(name))
        done = "paused" if verb == "pause" else "resumed"
        msg = f"queue {name}: {done}" if changed else f"queue {name}: already {done}"
        return self.d.redirect(request, "/", msg)

    async def schedule(self, request: Request) -> Response:
        """POST /schedules/{name}/pause|resume|trigger|delete."""
        name, verb = request.path_params["name"], request.path_params["verb"]
        api = getattr(self.d.client, "schedules", None)
        if verb not in SCHEDULE_VERBS or api is None:
            return self.d.error(request, 404, "Not found", f"No schedule action {verb!r}.")
        if verb == "delete" and (await request.form()).get("confirm") != "yes":
            return self.d.page(request, "confirm_schedule.html", schedule=name)
        result = await getattr(api, verb)(name)
        if result is False:
            return self.d.error(request, 404, "Schedule not found", f"No schedule {name!r}.")
        extra = f": run {result.id}" if verb == "trigger" and hasattr(result, "id") else ""
        past = {"pause": "paused", "resume": "resumed", "trigger": "triggered"}
        return self.d.redirect(
            request, "/schedules", f"schedule {name}: {past.get(verb, 'deleted')}{extra}"
        )

    async def bulk(self, request: Request) -> Response:
        """POST /runs/bulk: a confirmation with the count, then the action in batches."""
        form = await request.form()
        action = str(form.get("action", ""))
        if action not in ("cancel", "retry"):
            raise InvalidArgumentError(f"action must be cancel or retry, not {action!r}")
        job = str(form.get("job", "")).strip()
        if not job:
            raise InvalidArgumentError("choose a job: bulk actions act on one job's runs")
        allowed = CANCELLABLE if action == "cancel" else RETRIABLE
        status = [str(s) for s in form.getlist("status") if s and str(s) in allowed]
        filters: dict[str, Any] = {
            "job": job,
            "status": status or None,
            "created_after": parse_when(str(form.get("created_after", "")), "created after"),
            "created_before": parse_when(str(form.get("created_before", "")), "created before"),
        }
        control = self.d.client._control
        back = urlencode(
            [("job", job)]
            + [("status", s) for s in status]
            + [
                (k, str(form.get(k, "")))
                for k in ("created_after", "created_before")
                if form.get(k)
            ]
        )
        if form.get("confirm") != "yes":
            count = await control.count_runs(action, **filters)
            fields = [("action", action), ("job", job)] + [("status", s) for s in status]
            fields += [(k, str(form.get(k, ""))) for k in ("created_after", "created_before")]
            fields.append(("count", str(count)))
            return self.d.page(
                request,
                "confirm.html",
                action=action,
                count=count,
                job=job,
                status=status or ([] if action == "cancel" else ["failed"]),
                fields=fields,
                back=back,
            )
        reason = "cancelled from the dashboard"
        cursor = str(form.get("cursor") or "") or None
        done = _int(form.get("done"))
        changed, nxt = await control.bulk_part(
            action, reason=reason, cursor=cursor, seconds=PART_S, **filters
        )
        done += changed
        verb = "cancelled" if action == "cancel" else "retried"
        if nxt is not None:  # a large set: show the progress, the page posts the next part
            fields = [("action", action), ("job", job)] + [("status", s) for s in status]
            fields += [(k, str(form.get(k, ""))) for k in ("created_after", "created_before")]
            fields += [("cursor", nxt), ("done", str(done)), ("count", str(form.get("count")))]
            total = _int(form.get("count"))
            return self.d.page(
                request, "bulk_progress.html", verb=verb, done=done, total=total, fields=fields
            )
        return self.d.redirect(request, f"/runs?{back}", f"{done} run(s) {verb}")


def _int(value: Any) -> int:
    try:
        return max(int(str(value or 0)), 0)
    except ValueError:
        return 0
