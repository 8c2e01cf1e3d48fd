"""Scripts of durable state: counters and token-checked locks."""

from __future__ import annotations

from .door import Door


class StateScripts(Door):
    """Scripts of durable state."""

    async def state_incr(self, name: str, amount: int, ttl_ms: int) -> int:
        """Add to a counter (TTL only on creation). InvalidArgumentError if not an int."""
        return int(await self.call("state_incr", [self.keys.state(name)], [amount, ttl_ms, name]))

    async def lock_extend(self, name: str, token: str, ttl_ms: int) -> bool:
        """Reset a lock's TTL while it holds `token`."""
        return bool(await self.call("lock_extend", [self.keys.lock(name)], [token, ttl_ms]))

    async def lock_release(self, name: str, token: str) -> bool:
        """Delete a lock while it holds `token`."""
        return bool(await self.call("lock_release", [self.keys.lock(name)], [token]))
