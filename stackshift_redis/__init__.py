"""stackshift-redis: Redis-native durable job orchestration.

Jobs, runs, memoized steps, queues, durable state and events on one Redis (or Redis
Cluster), every state transition one atomic Lua script.
"""

from ._attempt.context import RunContext, SyncRunContext
from ._attempt.statetx import StateTx
from ._attempt.steps import Step, SyncStep
from ._client.handles import RunHandle
from ._client.schedules import ScheduleInfo
from ._client.state import Lock, State, SyncState
from ._core.flow import CancelOn, Concurrency, Debounce, RateLimit, Singleton, Throttle
from ._core.output import StreamMessage
from ._core.records import Event, RunInfo, RunPage, RunStatus, SendEventResult
from ._worker.worker import Worker
from .app import StackShift
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
    TransactionConflictError,
    UnknownJobError,
)

__all__ = [
    "CancelOn",
    "Concurrency",
    "Debounce",
    "Event",
    "InvalidArgumentError",
    "InvalidRunStateError",
    "Lock",
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
    "State",
    "StateTx",
    "Step",
    "StreamMessage",
    "SyncRunContext",
    "SyncState",
    "SyncStep",
    "Throttle",
    "TransactionConflictError",
    "UnknownJobError",
    "Worker",
]
__version__ = "0.1.0"

for _name in __all__:  # reprs and docs show stackshift_redis.X, as httpx does
    globals()[_name].__module__ = __name__
