"""The sync facade after fork(): gunicorn --preload and multiprocessing (issue 11, item 5)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

from helpers import RedisServer

from stackshift_redis import StackShift


def _child_main(app: StackShift, write_fd: int) -> None:
    try:
        sync = app.sync
        run = sync.start("forked", {"pid": os.getpid()}, queue_name="nowhere")
        info = sync.get_run(run.id)
        sync.state.set("child", os.getpid())
        out = {"status": info.status, "state": sync.state.get("child")}
    except BaseException as exc:  # report anything, never hang
        out = {"error": repr(exc)}
    os.write(write_fd, json.dumps(out).encode())
    os._exit(0)


def test_the_sync_facade_works_in_a_forked_child(redis_server: RedisServer) -> None:
    app = redis_server.app()
    try:
        sync = app.sync
        first = sync.start("forked", {"pid": "parent"}, queue_name="nowhere")
        assert sync.get_run(first.id) is not None  # the loop thread and client exist now
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            _child_main(app, write_fd)
        os.close(write_fd)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung on the sync facade")
        out = json.loads(os.read(read_fd, 65536) or b"{}")
        os.close(read_fd)
        assert out == {"status": "queued", "state": pid}, out
        assert sync.get_run(first.id) is not None  # the parent's facade still works
    finally:
        app.sync.close()
        asyncio.run(redis_server.close_app(app))
