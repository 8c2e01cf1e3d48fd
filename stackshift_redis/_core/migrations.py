"""The steps that carry a namespace's data from one storage layout to the next.

REGISTER EVERY MIGRATION STEP HERE, its code in `_core` (here, or a module of its own such
as `migrate_keys.py`), not in `_worker`: clients migrate too (a client's first script call
may find an older layout), `_core` cannot import `_worker` (tests/test_layers.py), and the
`stackshift layout migrate` command runs the steps with no application code.
`layout.py` runs them (lock, cursors, log lines, waiting processes); this module only
lists them. A release that changes what Redis holds (a key name, a run-hash field, an
index, the shape of a value) adds its steps to `MIGRATIONS`, raises `layout.LAYOUT`,
and commits the fixture of the release before it (tests/upgrade/README.md).

A step is `Migration(name, what, convert, layout)`:

- `convert(ns, cursor, limit)` converts up to about `limit` items after `cursor` ("" the
  first time) and returns the next cursor, or None when nothing is left; it may return
  `(next cursor, items converted)` so that the log line counts them. `ns` is the
  `Namespace` (`ns.redis`, `ns.keys`, `ns.scripts`); its script calls pass the layout
  gate while the step runs. Type it `Any`: importing `_core.namespace` here (even under
  TYPE_CHECKING) is a cycle (namespace -> layout -> migrations) that test_layers refuses.
  Each call is bounded: one or a few short Redis calls (a Lua script for anything that
  must be atomic), never a script that walks everything.
- **Idempotent, per item**: the cursor is saved after each call, so a process killed
  between a call and the save makes the next process run that batch again; and the
  rolling-deploy sweep (below) runs every step again over data already converted. Check
  before converting (the old form present, the new form absent), in the script that
  converts.
- **Cursor**: a string the step alone reads (a run id, a SCAN cursor, an index offset);
  its format never changes once released (a crashed migration resumes with the next
  release's code).
- **No app settings**: the CLI migrates with none (no registry, default retention), so a
  step keeps TTLs as they are (PTTL then PEXPIRE) and reads nothing from the app.
- `name`: unique forever (the cursor is stored as `mig:<name>` in `keys.meta()`).
  `what`: what it converts, for the log line. `layout`: the layout it leads to; a
  namespace runs the steps whose `layout` is above its own. Main records layout 2 (with
  6707af1's data) since the layout check landed, and any commit of main may be deployed,
  so each landing that changes stored data raises `layout.LAYOUT` by one and gives its
  steps that number: the first one 3, the next 4, and so on.
- A namespace with no layout recorded and none of layout 1's marker keys
  (`keys.layout1_markers`: a status index, the job map, a worker, a schedule, the run-id
  counter) is new: it is given the current layout and no step runs on it. A step that
  converts keys a namespace can hold without any of those adds a marker there.
- The old names of `keys.meta()`, `keys.migrating()`, `keys.workers()`,
  `keys.worker_info()` and the markers of layout 1 (`layout.old_layout_markers`) are read
  by every later release: never rename them.

Rolling deploys: processes of the previous release keep running while the new one starts.
Layout-aware ones (layout 2 on) stop writing within 30 s of a newer migration starting
(layout.py waits for that before converting); release 6707af1 (layout 1) knows nothing of
layouts, so its workers and clients keep writing layout 1 after the migration. New
workers therefore run the steps again (the sweep, a few batches at a time) while a worker
of an older layout is alive and for `layout.SWEEP_AFTER_S` after a migration. Hence:

- a step must convert whatever an old process writes later (it runs again), and
- the previous release must still work on converted data while both run (expand, then
  contract: add the new form and keep the old one readable for one release; drop the old
  form in a later step). A change the previous release cannot read needs a deploy that
  stops every old process first: say so in the release notes and the Deploying guide.

Tests: tests/test_layout*.py install test-only steps through tests/apps/layout_jobs.py;
none of them belongs here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .migrate_indexes import drop_untimed_indexes
from .migrate_keys import escape_key_names

Converted = str | None | tuple[str | None, int]  # next cursor, or (next cursor, count)
Convert = Callable[[Any, str, int], Awaitable[Converted]]  # (Namespace, cursor, limit)


@dataclass(frozen=True)
class Migration:
    """One step towards `layout` (see the module docstring for the rules)."""

    name: str
    what: str  # for the log line: what it converts
    convert: Convert
    layout: int  # the layout this step leads to


MIGRATIONS: list[Migration] = [  # every step, oldest first (run in this order)
    Migration(
        "escape_key_names",
        "idempotency, queue, flow-control and event keys of names with ':'",
        escape_key_names,
        3,
    ),
    Migration(
        "untimed_indexes",
        "status indexes of queued (time) and running runs (deleted; running: from leases)",
        drop_untimed_indexes,
        4,
    ),
]


def steps_after(layout: int) -> list[Migration]:
    """The steps a namespace of `layout` needs, in order."""
    return [m for m in MIGRATIONS if m.layout > layout]


def split(reply: Converted) -> tuple[str | None, int | None]:
    """A step's reply as (next cursor, items converted or None when it does not count)."""
    if isinstance(reply, tuple):
        return reply[0], int(reply[1])
    return reply, None
