"""Deprecated module path: import Worker from `stackshift_redis`.

The internals moved into private wings (`stackshift_redis._attempt`, `._client`,
`._worker`); this module keeps the old import path working for one release."""

import warnings

from ._worker.worker import Worker

__all__ = ["Worker"]

warnings.warn(
    "stackshift_redis.worker is deprecated: import Worker from stackshift_redis",
    DeprecationWarning,
    stacklevel=2,
)
