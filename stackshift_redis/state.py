"""Deprecated module path: import State, SyncState and Lock from `stackshift_redis`.

The internals moved into private wings (`stackshift_redis._attempt`, `._client`,
`._worker`); this module keeps the old import path working for one release."""

import warnings

from ._client.state import Lock, State, SyncState

__all__ = ["Lock", "State", "SyncState"]

warnings.warn(
    "stackshift_redis.state is deprecated: import Lock, State, SyncState from stackshift_redis",
    DeprecationWarning,
    stacklevel=2,
)
