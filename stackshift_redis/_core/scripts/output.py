"""Scripts of run output streams: publish (an attempt's write) and follow (a reader's mark)."""

from __future__ import annotations

from .door import Door, _str
from .requests import PublishRequest


class OutputScripts(Door):
    """Scripts of run output streams (lua/README.md, "Run output streams")."""

    async def publish(self, request: PublishRequest) -> str:
        """Append a message to a running run's output stream; its id. A re-sent call (the
        same `call` number) returns the id it got, nothing added. LeaseLostError when the
        token no longer holds the run."""
        k, q = self.keys, request
        args = [q.run_id, q.token, q.call, q.attempt, q.topic, q.data, q.cap]
        return _str(await self.call("publish", [k.run(q.run_id), k.output(q.run_id)], args))

    async def follow(self, run_id: str) -> str | None:
        """Mark an unfinished run as followed (its finish then ends its output stream); its
        status, or None when there is no such run."""
        reply = await self.call("follow", [self.keys.run(run_id)], [])
        return None if reply is None else _str(reply)
