"""rq driver (sync): `Queue.enqueue`, bulk = `Queue.enqueue_many(prepare_data(...))`;
32 in flight = 32 threads sharing one client pool. Worker = `rq.Worker` (the CLI's default
class: forks one work horse per job) with `work()` at defaults, logging at WARNING;
with `--worker-class simple` (reported as rq-simple) `rq.SimpleWorker` (no fork)."""

from __future__ import annotations

import argparse
from importlib.metadata import version

from _common import Peer, main, mark
from redis import Redis
from rq import Queue, SimpleWorker, Worker

JOB = "rq_driver.noop"  # by name: the work horse imports this module


def noop(i: int) -> None:
    mark(b"S")
    mark(b"E")


def connect(url: str) -> Queue:
    return Queue("default", connection=Redis.from_url(url, max_connections=64))


def enqueue(q: Queue, i: int) -> None:
    q.enqueue(JOB, i)


def bulk(q: Queue, items: list[int]) -> None:
    q.enqueue_many([Queue.prepare_data(JOB, (i,)) for i in items])


def close(q: Queue) -> None:
    q.connection.close()


def _simple() -> bool:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--worker-class", choices=["default", "simple"], default="default")
    return bool(p.parse_known_args()[0].worker_class == "simple")


def run_worker(url: str) -> None:
    conn = Redis.from_url(url)
    cls = SimpleWorker if _simple() else Worker
    cls([Queue("default", connection=conn)], connection=conn).work(logging_level="WARNING")


if __name__ == "__main__":
    name = "rq-simple" if _simple() else "rq"
    main(Peer(name, version("rq"), connect, enqueue, bulk, close, run_worker, sync=True))
