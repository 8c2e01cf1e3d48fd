"""The dashboard: a Starlette app with server-rendered pages over `inspection.Inspector`.

Pages (stable URLs, relative to where the app is mounted): `/` (queues, workers, totals),
`/runs?status=&job=&cursor=`, `/runs/{run_id}`, `/events`, `/schedules`, `/jobs`;
`/runs/{run_id}/stream` is the run's output as Server-Sent Events (streaming.py), which
the run page shows live. Actions are POST forms carrying a CSRF token
(`/runs/{id}/cancel|retry|replay`, `/events`): refused with 403 without the token and 405
when the app is read-only. htmx (vendored, no build step) refreshes the live parts of a
page by fetching the page again and swapping `#live`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .._client.client import Client
from .._client.control import CANCELLABLE, RETRIABLE
from .._client.inspector import Inspector, jsonable, waterfall
from .._client.jobs_view import jobs_report
from .._client.views import entry_details, minute_series, until
from .._core.keys import STATUSES
from .._core.records import epoch_ms
from ..errors import InvalidArgumentError, StackShiftError
from .auth import COOKIE, Access, SecurityHeaders, Sessions
from .charts import minute_chart
from .ops import Ops, job_names, parse_when, search_run
from .streaming import stream_endpoint

HERE = Path(__file__).resolve().parent
Handler = Callable[[Request], Awaitable[Response]]
FINAL = ("completed", "failed", "cancelled")


def _pretty(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


def _compact(value: Any) -> str:
    """One-line JSON, characters as they are (the template escapes the HTML)."""
    return json.dumps(jsonable(value), ensure_ascii=False)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _span(start: Any, end: Any) -> str:
    if start is None or end is None:
        return "-"
    secs = (end - start).total_seconds()
    return f"{secs * 1000:.0f} ms" if secs < 1 else f"{secs:.2f} s"


def _span_s(secs: float) -> str:
    return f"{secs * 1000:.0f} ms" if secs < 1 else f"{secs:.2f} s"


def _describe(client: Any) -> str:
    """Where a client points, for error pages (no password)."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if isinstance(kw, dict) and "host" in kw:
        return f"redis://{kw['host']}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    if isinstance(kw, dict) and "path" in kw:
        return f"unix://{kw['path']}"
    return "the configured Redis"


class Dashboard(Access):
    """The pages and actions of one namespace."""

    def __init__(
        self,
        client: Client,
        *,
        read_only: bool = False,
        token: str | None = None,
        basic_auth: str | None = None,
    ) -> None:
        self.client = client
        self.inspector = Inspector(client._core)
        self.read_only = read_only
        self.token = token
        self.basic = basic_auth
        self.sessions = Sessions(token)  # signed session cookies; CSRF tokens tied to them
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(pretty=_pretty, when=_when, compact=_compact)
        env.globals.update(
            span=_span,
            statuses=STATUSES,
            final=FINAL,
            until=until,
            details=entry_details,
            span_s=_span_s,
        )

    # access
    def page(self, request: Request, name: str, code: int = 200, **ctx: Any) -> Response:
        """Render a template with the common context."""
        base = request.scope.get("root_path", "").rstrip("/")
        ctx.update(
            request=request,
            base=base,
            namespace=self.client._core.namespace,
            read_only=self.read_only,
            csrf=self.sessions.csrf(sid) if (sid := getattr(request.state, "sid", None)) else "",
            msg=request.query_params.get("msg"),
            can_replay=hasattr(self.client, "replay"),
        )
        return self.templates.TemplateResponse(request, name, ctx, status_code=code)

    def error(self, request: Request, status: int, title: str, detail: str) -> Response:
        """A clear error page."""
        return self.page(request, "error.html", status, title=title, detail=detail)

    def wrap(self, handler: Handler, action: bool = False) -> Handler:
        """Access checks, read-only and CSRF for actions, one clear page per failure."""

        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request.cookies.get(COOKIE))
            request.state.session = session
            request.state.sid = session["sid"] if session else None
            moved = self._token_in_url(request)
            if moved is not None:
                return moved
            fresh = request.state.sid is None
            if fresh:  # a session for this browser: its pages' CSRF tokens are tied to it
                request.state.sid, request.state.cookie = self.sessions.new(False)
            denied = self._denied(request)
            if denied is not None:
                return self._with_cookie(denied, request, fresh)
            try:
                if action:
                    if self.read_only:
                        return self.error(request, 405, "Read-only", "This dashboard is read-only.")
                    form = await request.form()
                    given = str(form.get("csrf", ""))
                    if fresh or not self.sessions.csrf_ok(request.state.sid, given):
                        return self.error(
                            request, 403, "Refused", "Missing or invalid CSRF token: reload."
                        )
                response = await handler(request)
                return self._with_cookie(response, request, fresh)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                url = _describe(self.client._core.redis)
                return self.error(
                    request,
                    503,
                    "Redis is unreachable",
                    f"Cannot reach Redis at {url} ({exc}). Is redis-server running there? "
                    "Check the dashboard's --redis-url.",
                )
            except InvalidArgumentError as exc:
                return self.error(request, 400, "Bad request", str(exc))
            except StackShiftError as exc:
                return self.error(request, 409, "Refused", str(exc))

        return endpoint

    def redirect(self, request: Request, path: str, msg: str | None = None) -> Response:
        """303 to a page of this app, with a one-line message."""
        base = request.scope.get("root_path", "").rstrip("/")
        query = ("&" if "?" in path else "?") + urlencode({"msg": msg}) if msg else ""
        return RedirectResponse(base + path + query, status_code=303)

    # pages
    async def overview(self, request: Request) -> Response:
        """Queues, workers and run counts."""
        started = time.perf_counter()
        ov = await self.inspector.overview()
        now = epoch_ms(ov.now) if ov.now else int(time.time() * 1000)
        series = await minute_series(self.client._core, [q.name for q in ov.queues], now)
        took = (time.perf_counter() - started) * 1000
        charts = [(m, minute_chart(m)) for m in series]
        return self.page(request, "overview.html", ov=ov, took=took, charts=charts)

    async def runs(self, request: Request) -> Response:
        """A page of runs, filtered by status, job and creation time; `q` finds a run by
        id or idempotency key."""
        q = request.query_params
        status = [s for s in q.getlist("status") if s] or None
        job = q.get("job") or None
        cursor = q.get("cursor") or None
        search = (q.get("q") or "").strip()
        jobs = await job_names(self.client)
        if search:
            found = await search_run(self.client, search, [job] if job else jobs)
            if found is not None:
                return self.redirect(request, f"/runs/{found}")
        after = parse_when(q.get("created_after") or "", "created after")
        before = parse_when(q.get("created_before") or "", "created before")
        started = time.perf_counter()
        page = await self.inspector.runs(
            status=status,
            job=job,
            limit=50,
            cursor=cursor,
            created_after=after,
            created_before=before,
        )
        took = (time.perf_counter() - started) * 1000
        keep = [
            (k, v)
            for k, v in (
                ("job", job or ""),
                ("created_after", q.get("created_after") or ""),
                ("created_before", q.get("created_before") or ""),
            )
            if v
        ]
        params = [("status", s) for s in status or []] + keep
        nxt = urlencode([*params, ("cursor", page.cursor)]) if page.cursor else None
        first = urlencode(params)
        return self.page(
            request,
            "runs.html",
            page=page,
            status=status or [],
            job=job or "",
            jobs=jobs,
            created_after=q.get("created_after") or "",
            created_before=q.get("created_before") or "",
            search=search,
            cursor=cursor,
            next_query=nxt,
            first_query=first,
            took=took,
            retriable=[s for s in status or ["failed"] if s in RETRIABLE],
            cancellable=[s for s in status or CANCELLABLE if s in CANCELLABLE],
        )

    async def run(self, request: Request) -> Response:
        """One run: payload, result or error, step waterfall, timeline, links."""
        run_id = request.path_params["run_id"]
        view = await self.inspector.view(run_id)
        if view is None:
            return self.error(
                request,
                404,
                "Run not found",
                f"No run {run_id} in namespace {self.client._core.namespace!r}: "
                "it never existed here or expired after retention.",
            )
        bars = waterfall(view.info)
        total = max([b["start"] + (b["duration"] or 0) for b in bars] + [0.001])
        return self.page(
            request,
            "run.html",
            run=view.info,
            view=view,
            bars=bars,
            total=total,
            children=view.children,
            now=datetime.now(UTC),
        )

    async def events(
        self, request: Request, error: str | None = None, form: Any = None
    ) -> Response:
        """Recent events, waiting runs, and the send-event form."""
        recent = await self.inspector.recent_events()
        waiting = await self.inspector.waiters()
        return self.page(
            request,
            "events.html",
            400 if error else 200,
            recent=recent,
            waiting=waiting,
            now=datetime.now(UTC),
            error=error,
            form=form or {},
        )

    async def schedules(self, request: Request) -> Response:
        """Schedules, when this version has them."""
        api = getattr(self.client, "schedules", None)
        infos = await api.list() if api is not None else None
        return self.page(request, "schedules.html", infos=infos)

    async def jobs(self, request: Request) -> Response:
        """Jobs: live versions and their workers, unfinished runs per version."""
        reports = await jobs_report(self.client._core)
        return self.page(request, "jobs.html", reports=reports)

    # actions
    async def cancel(self, request: Request) -> Response:
        """Cancel a run."""
        run_id = request.path_params["run_id"]
        if await self.client.get_run(run_id) is None:
            return self.error(request, 404, "Run not found", f"No run {run_id}.")
        done = await self.client.cancel(run_id, "cancelled from the dashboard")
        return self.redirect(request, f"/runs/{run_id}", "cancelled" if done else "not cancelled")

    async def retry(self, request: Request) -> Response:
        """Queue a failed run again."""
        run_id = request.path_params["run_id"]
        await self.client.retry(run_id)
        return self.redirect(request, f"/runs/{run_id}", "queued again")

    async def replay(self, request: Request) -> Response:
        """A new run of the same job and payload (from a step, when given)."""
        run_id = request.path_params["run_id"]
        replay = getattr(self.client, "replay", None)
        if replay is None:
            return self.error(request, 409, "Refused", "Replay is not available in this version.")
        step = str((await request.form()).get("from_step") or "") or None
        handle = await replay(run_id, from_step=step)
        new_id = getattr(handle, "id", handle)
        return self.redirect(request, f"/runs/{new_id}", f"replay of {run_id}")

    async def send_event(self, request: Request) -> Response:
        """Send an event from the form."""
        form = await request.form()
        name = str(form.get("name", "")).strip()
        raw = str(form.get("data", "")).strip()
        event_id = str(form.get("id", "")).strip() or None
        values = {"name": name, "data": raw, "id": event_id or ""}
        try:
            data = json.loads(raw) if raw else None
        except ValueError as exc:
            return await self.events(request, f"The data is not valid JSON: {exc}", values)
        try:
            result = await self.client.send_event(name, data, id=event_id)
        except InvalidArgumentError as exc:
            return await self.events(request, str(exc), values)
        msg = (
            f"event {result.id} was already sent: nothing resumed"
            if result.duplicate
            else f"event {result.id}: resumed {len(result.resumed)}, started {len(result.started)}"
        )
        return self.redirect(request, "/events", msg)


async def favicon(request: Request) -> Response:
    """The icon (also at /favicon.ico for browsers that ask there)."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")


async def _not_found(request: Request, exc: Exception) -> Response:
    detail = exc.detail if isinstance(exc, HTTPException) else "Not found"
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    return Response(f"{status}: {detail}", status, media_type="text/plain")


def create_app(
    stackshift: Client,
    *,
    read_only: bool = False,
    token: str | None = None,
    basic_auth: str | None = None,
) -> Starlette:
    """The dashboard of `stackshift`'s namespace as an ASGI app (mount it anywhere).

    `read_only` refuses every action (405); `token` requires `Authorization: Bearer
    <token>` (or `?token=` once in a browser, which sets a cookie); `basic_auth`
    ("user:password") requires HTTP basic authentication."""
    d = Dashboard(stackshift, read_only=read_only, token=token, basic_auth=basic_auth)
    w, ops = d.wrap, Ops(d)
    routes = [
        Route("/", w(d.overview)),
        Route("/login", w(d.login_form)),
        Route("/login", d.login, methods=["POST"]),
        Route("/favicon.ico", favicon),
        Route("/runs", w(d.runs)),
        Route("/runs/bulk", w(ops.bulk, True), methods=["POST"]),
        Route("/runs/{run_id}", w(d.run)),
        Route("/runs/{run_id}/stream", w(stream_endpoint(stackshift))),
        Route("/runs/{run_id}/cancel", w(d.cancel, True), methods=["POST"]),
        Route("/runs/{run_id}/retry", w(d.retry, True), methods=["POST"]),
        Route("/runs/{run_id}/replay", w(d.replay, True), methods=["POST"]),
        Route("/events", w(d.events)),
        Route("/events", w(d.send_event, True), methods=["POST"]),
        Route("/schedules", w(d.schedules)),
        Route("/schedules/{name}/{verb}", w(ops.schedule, True), methods=["POST"]),
        Route("/queues/{name}/{verb}", w(ops.queue, True), methods=["POST"]),
        Route("/jobs", w(d.jobs)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _not_found})
    app.add_middleware(SecurityHeaders)
    return app
