"""Sessions, CSRF and response headers of the dashboard.

Every browser gets a signed session cookie (`stackshift_session`, HttpOnly, SameSite=Lax,
12 h; signed with itsdangerous): `{"sid": random, "auth": bool}`. With a token, the
cookie's key derives from the token (a new token ends every session); `auth` is set by a
login (`POST /login` with the token) or by one visit with `?token=`, which is then
redirected to the same URL without it, so the token leaves the address bar and history.
`Authorization: Bearer` and HTTP basic authentication are checked on each request as
before. The CSRF token of a page is an HMAC of the session id: a form posted from another
session, or without a session, is refused (403). Every response carries
`X-Frame-Options: DENY`, a Content-Security-Policy (`frame-ancestors 'none'`, scripts and
styles from the app only), `X-Content-Type-Options: nosniff` and
`Referrer-Policy: same-origin`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "stackshift_session"
MAX_AGE = 12 * 3600
HEADERS = [
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class Sessions:
    """Signed session cookies and the CSRF tokens tied to them."""

    def __init__(self, token: str | None) -> None:
        if token is not None:
            key = hmac.new(token.encode(), b"stackshift-dashboard-session", "sha256").digest()
        else:
            key = secrets.token_bytes(32)  # no token: sessions last as long as the process
        self.key = key
        self.signer = URLSafeTimedSerializer(key, salt="stackshift-session")

    def new(self, auth: bool) -> tuple[str, str]:
        """(session id, cookie value) of a new session."""
        sid = secrets.token_urlsafe(16)
        return sid, str(self.signer.dumps({"sid": sid, "auth": auth}))

    def read(self, cookie: str | None) -> dict[str, Any] | None:
        """The session of a cookie, None when absent, forged or older than MAX_AGE."""
        if not cookie:
            return None
        try:
            value = self.signer.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        return value if isinstance(value, dict) and isinstance(value.get("sid"), str) else None

    def csrf(self, sid: str) -> str:
        """The CSRF token of a session."""
        return hmac.new(self.key, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, given: str) -> bool:
        """True when `given` is the CSRF token of session `sid`."""
        return sid is not None and hmac.compare_digest(given.encode(), self.csrf(sid).encode())


class SecurityHeaders:
    """ASGI middleware: the framing, CSP and sniffing headers on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in have]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def _credentials(header: str, scheme: str) -> str | None:
    """The credentials of an Authorization header of `scheme` (any case), else None."""
    given, _, credentials = header.strip().partition(" ")
    if given.lower() != scheme or not credentials.strip():
        return None
    return credentials.strip()


class Access:
    """Authentication of the dashboard's requests (a mixin of Dashboard)."""

    token: str | None
    basic: str | None
    sessions: Sessions

    def page(self, request: Request, name: str, code: int = 200, **ctx: Any) -> Response:
        raise NotImplementedError

    def redirect(self, request: Request, path: str, msg: str | None = None) -> Response:
        raise NotImplementedError

    def _denied(self, request: Request) -> Response | None:
        """None when the request may proceed, else the 401 response. The scheme of the
        Authorization header is matched case-insensitively (RFC 7235)."""
        auth = request.headers.get("authorization", "")
        if self.basic is not None:
            given = _credentials(auth, "basic")
            try:
                pair = base64.b64decode(given or "", validate=True).decode()
            except ValueError:
                pair = ""
            if not hmac.compare_digest(pair.encode(), self.basic.encode()):
                return Response(
                    "authentication required",
                    401,
                    headers={"WWW-Authenticate": 'Basic realm="stackshift"'},
                )
        if self.token is not None:
            given = _credentials(auth, "bearer")
            session = request.state.session
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                return None
            if session is not None and session.get("auth"):
                return None
            return self.login_page(request, 401)
        return None

    def login_page(self, request: Request, code: int = 200, error: str = "") -> Response:
        """The token form (401 when a page was asked for without a session)."""
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return self.page(request, "login.html", code, next=nxt, error=error)

    def _token_in_url(self, request: Request) -> Response | None:
        """`?token=` once: a logged-in session, and the same URL without the token."""
        given = request.query_params.get("token")
        if self.token is None or given is None:
            return None
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
        response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
        self._set_session(response, auth=True)
        return response

    def _set_session(self, response: Response, auth: bool) -> str:
        sid, cookie = self.sessions.new(auth)
        response.set_cookie(
            COOKIE, cookie, max_age=MAX_AGE, httponly=True, samesite="lax", path="/"
        )
        return sid

    async def login_form(self, request: Request) -> Response:
        """GET /login: the token form (a signed-in browser goes to the overview)."""
        return self.redirect(request, "/")

    async def login(self, request: Request) -> Response:
        """POST /login: the token from the form starts a logged-in session."""
        request.state.sid = None
        form = await request.form()
        given = str(form.get("token", ""))
        nxt = str(form.get("next", "")) or "/"
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        if self.token is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return self.page(request, "login.html", 401, next=nxt, error="Wrong token.")
        base = request.scope.get("root_path", "").rstrip("/")
        path = nxt if nxt.startswith(base + "/") else base + nxt
        response = RedirectResponse(path, 303)
        self._set_session(response, auth=True)
        return response

    def _with_cookie(self, response: Response, request: Request, fresh: bool) -> Response:
        if fresh and COOKIE not in str(response.headers.get("set-cookie", "")):
            response.set_cookie(
                COOKIE, request.state.cookie, max_age=MAX_AGE, httponly=True, samesite="lax"
            )
        return response
