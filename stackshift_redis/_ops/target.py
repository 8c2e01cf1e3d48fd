"""Shared pieces of the `stackshift` command: where it points (a Redis URL and a
namespace), running one coroutine on a fresh app, and turning every failure into one
clear line, `Error: <what happened>: <what to check>` on stderr, with its exit code:

    0  done
    1  refused or not found: an unknown run or schedule, a run in the wrong state, a
       confirmation declined; `runs tail`: the run failed or was cancelled
    2  usage: a bad option or argument (status, date, JSON, name, --redis-url)
    3  Redis: unreachable, timed out, or refused the connection (password, DB index)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._client.inspector import jsonable
from .._core.keys import Keys
from ..app import StackShift
from ..errors import InvalidArgumentError, StackShiftError

T = TypeVar("T")
DEFAULT_URL = "redis://localhost:6379/0"


class Refused(click.ClickException):
    """Not found or refused: exit code 1, one line."""

    exit_code = 1


class RedisTrouble(click.ClickException):
    """Redis unreachable or refusing the connection: exit code 3, one line."""

    exit_code = 3


@dataclass
class Target:
    """Where the commands point: a Redis URL and a namespace (and its partition count,
    when given: else the one the namespace recorded)."""

    redis_url: str
    namespace: str
    cluster: bool = False
    partitions: int | None = None

    def _client(self) -> Any:
        try:
            factory: Any = RedisCluster if self.cluster else aioredis.Redis
            return factory.from_url(self.redis_url, socket_connect_timeout=5, socket_timeout=30)
        except ValueError as exc:
            raise click.UsageError(f"invalid --redis-url {self.redis_url!r}: {exc}") from None

    def app(self, partitions: int | None = None) -> StackShift:
        """A StackShift with no jobs on this Redis and namespace (short connect timeout),
        with the namespace's partition count (read from Redis when not given)."""
        if partitions is None:
            partitions = self.run(_partitions)
        return self._app(self._client(), partitions)

    def _app(self, client: Any, partitions: int) -> StackShift:
        try:
            return StackShift(redis=client, namespace=self.namespace, partitions=partitions)
        except InvalidArgumentError as exc:
            raise click.UsageError(str(exc)) from None

    async def _open(self) -> StackShift:
        """An app with the partition count the namespace recorded (`partitions` in its
        meta hash; 1 when none is: every namespace of one partition), or the one given
        (--partitions: a usage error when the namespace recorded another)."""
        try:
            meta = Keys(self.namespace).meta()
        except InvalidArgumentError as exc:
            raise click.UsageError(str(exc)) from None
        client = self._client()
        try:
            layout, raw = await client.hmget(meta, ["layout", "partitions"])
        except (RedisError, OSError, RedisClusterException):
            layout = raw = None  # the command's own first read reports it (after usage errors)
        try:
            recorded = int(raw) if raw else (1 if layout else None)  # (1 is not recorded)
            given = self.partitions
            if given is not None and recorded is not None and given != recorded:
                raise click.UsageError(
                    f"namespace {self.namespace!r} has {recorded} partition(s), not {given} "
                    "(--partitions / STACKSHIFT_PARTITIONS)"
                )
            return self._app(client, given or recorded or 1)
        except BaseException:
            await client.aclose()
            raise

    def run(self, work: Callable[[StackShift], Awaitable[T]]) -> T:
        """Run `work(app)` on a fresh app; map every failure to one clear line."""

        async def main() -> T:
            app = await self._open()
            try:
                return await work(app)
            finally:
                client = app.redis
                await app.close()
                await client.aclose()

        try:
            return asyncio.run(main())
        except (RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException) as exc:
            raise RedisTrouble(
                f"cannot reach Redis at {self.redis_url} ({exc}): is redis-server running "
                "there? check --redis-url or STACKSHIFT_REDIS_URL"
            ) from None
        except InvalidArgumentError as exc:
            raise click.UsageError(str(exc)) from None
        except StackShiftError as exc:
            raise Refused(str(exc)) from None
        except RedisError as exc:
            hint = (
                ": that database number does not exist there (the /N of --redis-url)"
                if "DB index" in str(exc)
                else ""
            )
            raise RedisTrouble(f"Redis at {self.redis_url} refused: {exc}{hint}") from None


async def _partitions(app: StackShift) -> int:
    return app._core.partitions


def target_of(ctx: click.Context) -> Target:
    """The Target the `stackshift` group stored on the click context."""
    obj = ctx.find_object(Target)
    assert obj is not None
    return obj


def emit_json(value: Any) -> None:
    """Print inspection values as indented JSON (--json)."""
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def parse_when(value: str | None, what: str) -> datetime | None:
    """An ISO date/time option as an aware datetime (naive: UTC); a usage error if bad."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date/time", param_hint=what) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def empty_hint(target: Target) -> str:
    """The hint printed when a namespace shows nothing."""
    return (
        f"namespace {target.namespace!r} on {target.redis_url} has no data yet "
        "(check --namespace / STACKSHIFT_NAMESPACE)"
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
