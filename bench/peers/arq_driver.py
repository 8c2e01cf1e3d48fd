"""arq driver: `arq.create_pool` + `enqueue_job`; worker = `arq.worker.Worker` at defaults
(max_jobs=10, keep_result=3600 s), run programmatically (no per-job log handler)."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from _common import Peer, main, mark, redis_url
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker


async def noop(ctx: dict[str, Any], i: int) -> None:
    mark(b"S")
    mark(b"E")


async def connect(url: str) -> ArqRedis:
    return await create_pool(RedisSettings.from_dsn(url))


async def enqueue(pool: ArqRedis, i: int) -> None:
    await pool.enqueue_job("noop", i)


async def close(pool: ArqRedis) -> None:
    await pool.aclose()


def run_worker(url: str) -> None:
    Worker(functions=[noop], redis_settings=RedisSettings.from_dsn(url)).run()


class WorkerSettings:  # for `arq arq_driver.WorkerSettings`, if run by hand
    functions = [noop]  # noqa: RUF012
    redis_settings = RedisSettings.from_dsn(redis_url())


if __name__ == "__main__":
    main(Peer("arq", version("arq"), connect, enqueue, None, close, run_worker))
