"""Deprecated module path: import ctx.step's types Step and SyncStep from `stackshift_redis`.

The internals moved into private wings (`stackshift_redis._attempt`, `._client`,
`._worker`); this module keeps the old import path working for one release."""

import warnings

from ._attempt.steps import Step, SyncStep

__all__ = ["Step", "SyncStep"]

warnings.warn(
    "stackshift_redis.steps is deprecated: import Step, SyncStep from stackshift_redis",
    DeprecationWarning,
    stacklevel=2,
)
