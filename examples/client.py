"""Starts runs of examples.shop against a running worker and prints what happened."""

from __future__ import annotations

import asyncio
import uuid

from stackshift_redis import RunFailed

from .shop import stackshift


async def main() -> None:
    order_id = f"o_{uuid.uuid4().hex[:6]}"
    order = {"id": order_id, "sku": "sku-42", "amount": 1999}
    run = await stackshift.start("checkout", order, idempotency_key=order_id)
    again = await stackshift.start("checkout", order, idempotency_key=order_id)
    print(f"started run {run.id}; duplicate start deduplicated={again.deduplicated}")
    result = await run.result(timeout=60)
    print(f"result: {result}")
    info = await run.info()
    assert info is not None
    charges = await stackshift.state.get(f"charges:{run.id}")
    print(f"status={info.status} attempts={info.attempts} card charged {charges} time(s)")
    print("timeline: " + " -> ".join(e["type"] for e in info.timeline))
    assert info.attempts == 2 and charges == 1, "charge-card must be memoized across the retry"

    refund = await stackshift.start("refund", {"order": order_id})
    try:
        await refund.result(timeout=60)
    except RunFailed as exc:
        print(f"refund failed as expected: {exc.error['type']}: {exc.error['message']}")
    print("example OK")
    await stackshift.close()


if __name__ == "__main__":
    asyncio.run(main())
