"""stackshift-redis: Redis-native durable job orchestration.

Jobs, runs, memoized steps, queues, durable state and events on one Redis (or Redis
Cluster), every state transition one atomic Lua script.
"""

from .app import StackShift
from .context import RunContext, SyncRunContext
from .errors import (
    InvalidArgumentError,
    InvalidRunStateError,
    LockError,
    NonRetriableError,
    PayloadError,
    RedisUnavailableError,
    RetryAfterError,
    RunCancelled,
    RunFailed,
    RunNotFoundError,
    StackShiftError,
    UnknownJobError,
)
from .flow import CancelOn, Concurrency, Debounce, RateLimit, Singleton, Throttle
from .records import Event, RunInfo, RunPage, RunStatus, SendEventResult
from .runs import RunHandle
from .schedules import ScheduleInfo

__all__ = [
    "CancelOn",
    "Concurrency",
    "Debounce",
    "Event",
    "InvalidArgumentError",
    "InvalidRunStateError",
    "LockError",
    "NonRetriableError",
    "PayloadError",
    "RateLimit",
    "RedisUnavailableError",
    "RetryAfterError",
    "RunCancelled",
    "RunContext",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunNotFoundError",
    "RunPage",
    "RunStatus",
    "ScheduleInfo",
    "SendEventResult",
    "Singleton",
    "StackShift",
    "StackShiftError",
    "SyncRunContext",
    "Throttle",
    "UnknownJobError",
]
__version__ = "0.1.0"

for _name in __all__:  # reprs and docs show stackshift_redis.X, as httpx does
    globals()[_name].__module__ = __name__
