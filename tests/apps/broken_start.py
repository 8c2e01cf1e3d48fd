"""A worker app whose startup hook fails: every worker process dies at start (the
supervisor's give-up test)."""

from __future__ import annotations

from typing import Any

from . import app_from_env

app = app_from_env()
app.job("noop", lambda ctx: None, queue="cli")


@app.on_startup
def connect_database(resources: dict[str, Any]) -> None:
    raise ConnectionRefusedError("the database at db.internal:5432 refused the connection")
