"""What running a plain step function in a thread costs (issue 11, item 2).

`ctx.step.run(name, fn)` in an async handler calls a plain `fn` through asyncio.to_thread
so a blocking call cannot stop lease renewal. This measures that hop alone (no Redis):
microseconds per call, direct call vs `steps._call_off_loop`, sequential and 32 at once.

    .venv/bin/python -m bench.step_thread_bench [calls]
"""

from __future__ import annotations

import asyncio
import sys
import time

from stackshift_redis._attempt.steps import _call_off_loop


def work(i: int) -> int:
    return i * 2


async def main(n: int) -> None:
    t0 = time.perf_counter()
    for i in range(n):
        work(i)
    direct = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for i in range(n):
        await _call_off_loop(work, i)
    threaded = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for lo in range(0, n, 32):
        await asyncio.gather(*(_call_off_loop(work, i) for i in range(lo, min(n, lo + 32))))
    batched = (time.perf_counter() - t0) / n * 1e6
    print(f"calls: {n}")
    print(f"direct call:                 {direct:8.2f} us/call")
    print(f"in a thread, one at a time:  {threaded:8.2f} us/call")
    print(f"in a thread, 32 at once:     {batched:8.2f} us/call")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
