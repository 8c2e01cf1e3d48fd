"""The `stackshift-worker` command's entry point, outside the package on purpose.

Importing `stackshift_redis` takes a few hundred milliseconds (seconds on a loaded host),
and until the worker installs its signal handlers Python's default action for SIGTERM is
to die (exit -15). A worker restarted by its supervisor and stopped right away died so.
This module notes SIGTERM and SIGINT before anything heavy is imported; the worker then
takes them over (`stackshift_redis.cli.note_signals`) and stops cleanly, exit 0.
"""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def main() -> None:
    """Note stop signals, import the worker command, hand it what arrived, run it."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _note)
    from stackshift_redis import cli

    cli.note_signals()  # the command's handler from here on: nothing is lost in between
    cli.RECEIVED.extend(signal.Signals(s) for s in _received)
    cli.main()


if __name__ == "__main__":
    main()
