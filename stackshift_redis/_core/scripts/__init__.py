"""The only door to Lua: one typed method per script in lua/, typed replies, one error map.

redis-py's `Script` does SHA caching, EVALSHA and reload on NOSCRIPT: no cache of our own.
Every call passes the namespace prefix in ARGV where the script derives keys with `K`
(lua/README.md); all keys share the namespace hash tag, so each call is one slot.
Error replies (`CODE detail`) become stackshift errors here (door.py) and nowhere else.
The methods are grouped by area (queues.py, runs.py, events.py, state.py, schedules.py,
namespace.py, output.py, definitions.py) and composed in `Scripts`; a script with many
arguments takes one request dataclass named after it (requests.py).
"""

from __future__ import annotations

from .definitions import DefinitionScripts
from .door import (
    CONNECTION_ERRORS,
    Door,
    DueSchedule,
    NewRun,
    ParkReply,
    QueueStats,
    ScriptCall,
    SendReply,
    StartReply,
    TakenRun,
    TakeReply,
    WaitReply,
    redis_call,
    unavailable,
)
from .events import EventScripts, leg_of_entry, send_legs
from .namespace import NamespaceScripts
from .output import OutputScripts
from .queues import QueueScripts
from .requests import (
    BulkRequest,
    FailRequest,
    FireScheduleRequest,
    HandBackRequest,
    InvokeRequest,
    PublishRequest,
    SendEventRequest,
    SleepRequest,
    StartRequest,
    TransactRequest,
    UpsertScheduleRequest,
    WaitEventRequest,
    fields_of,
)
from .runs import RunScripts
from .schedules import ScheduleScripts
from .state import StateScripts
from .transact import TransactReply, TransactScripts


class Scripts(
    QueueScripts,
    RunScripts,
    EventScripts,
    StateScripts,
    ScheduleScripts,
    NamespaceScripts,
    OutputScripts,
    TransactScripts,
    DefinitionScripts,
):
    """One method per Lua script (see the package docstring)."""


__all__ = [
    "CONNECTION_ERRORS",
    "BulkRequest",
    "Door",
    "DueSchedule",
    "FailRequest",
    "FireScheduleRequest",
    "HandBackRequest",
    "InvokeRequest",
    "NewRun",
    "ParkReply",
    "PublishRequest",
    "QueueStats",
    "ScriptCall",
    "Scripts",
    "SendEventRequest",
    "SendReply",
    "SleepRequest",
    "StartReply",
    "StartRequest",
    "TakeReply",
    "TakenRun",
    "TransactReply",
    "TransactRequest",
    "UpsertScheduleRequest",
    "WaitEventRequest",
    "WaitReply",
    "fields_of",
    "leg_of_entry",
    "redis_call",
    "send_legs",
    "unavailable",
]
