"""taskiq driver: `RedisStreamBroker` + `RedisAsyncResultBackend`, as in taskiq-redis's README;
enqueue = `noop.kiq(i)` (no bulk API). Worker = taskiq's own CLI worker body
(`taskiq.cli.worker.run.start_listen`) with the CLI's defaults but ONE process
(`taskiq worker` forks 2 by default) and no per-task logging."""

from __future__ import annotations

from importlib.metadata import version

from _common import Peer, main, mark, redis_url
from taskiq import AsyncBroker
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import start_listen
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker


def make_broker(url: str) -> AsyncBroker:
    b = RedisStreamBroker(url=url).with_result_backend(RedisAsyncResultBackend(redis_url=url))
    b.register_task(_noop, task_name="noop")
    return b


async def _noop(i: int) -> None:
    mark(b"S")
    mark(b"E")


broker = make_broker(redis_url())


async def connect(url: str) -> AsyncBroker:
    b = make_broker(url)
    await b.startup()  # creates the stream's consumer group before anything is sent
    return b


async def enqueue(b: AsyncBroker, i: int) -> None:
    await b.find_task("noop").kiq(i)  # type: ignore[union-attr]


async def close(b: AsyncBroker) -> None:
    await b.shutdown()


def run_worker(url: str) -> None:
    args = WorkerArgs(broker="taskiq_driver:broker", modules=[], configure_logging=False)
    start_listen(args)


if __name__ == "__main__":
    v = f"{version('taskiq')} (taskiq-redis {version('taskiq-redis')})"
    main(Peer("taskiq", v, connect, enqueue, None, close, run_worker))
