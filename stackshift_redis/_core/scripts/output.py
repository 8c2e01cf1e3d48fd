"""Scripts of run output streams: publish (an attempt's write) and follow (a reader's mark)."""

from __future__ import annotations

from .door import Door, _str


class OutputScripts(Door):
    """Scripts of run output streams (lua/README.md, "Run output streams")."""

    async def publish(
        self, run_id: str, token: str, call: int, attempt: int, topic: str, data: bytes,
        cap: int,
    ) -> str:  # fmt: skip
        """Append a message to a running run's output stream; its id. `call` numbers the
        attempt's publishes: a re-sent call returns the id it got (nothing added).
        LeaseLostError when the token no longer holds the run."""
        k = self.keys
        keys = [k.run(run_id), k.output(run_id)]
        return _str(await self.call("publish", keys, [run_id, token, call, attempt, topic,
                                                      data, cap]))  # fmt: skip

    async def follow(self, run_id: str) -> str | None:
        """Mark an unfinished run as followed (its finish then ends its output stream); its
        status, or None when there is no such run."""
        reply = await self.call("follow", [self.keys.run(run_id)], [])
        return None if reply is None else _str(reply)
