"""The stackshift web dashboard: `create_app(stackshift)` returns a Starlette ASGI app.

Needs the extra: `pip install 'stackshift-redis[dashboard]'`. Serve it with
`stackshift dashboard` or mount it in a Starlette/FastAPI app:
`app.mount("/stackshift", create_app(stackshift))`.
"""

from .web import create_app

__all__ = ["create_app"]
