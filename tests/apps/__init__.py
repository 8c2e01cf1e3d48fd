"""Apps that worker subprocesses load in tests (`stackshift-worker tests.apps.<name>:app`,
started by `helpers.spawn_worker`): core_jobs (recovery, flow control, lifecycle, faults),
deploy_jobs (Redis restarts, queue settings of several deploys, startup hooks),
observability_jobs (logs, metrics, tracing) and operator_jobs (CLI and dashboard).

Each is configured from the environment by `app_from_env`: REDIS_URL, STACKSHIFT_NAMESPACE
STACKSHIFT_TEST_CLUSTER (a RedisCluster client instead of a URL) and
STACKSHIFT_TEST_PARTITIONS (the namespace's partitions, 1 by default). Jobs record what
they observe in plain Redis keys named by `obs_key`, so the test process can assert on them.
"""

from __future__ import annotations

import os
from typing import Any

from redis.asyncio.cluster import RedisCluster

from stackshift_redis import StackShift

NAMESPACE = os.environ.get("STACKSHIFT_NAMESPACE", "default")

# INCR a "current" counter and keep its maximum in another key, atomically (KEYS: current,
# max): how tests see the most runs that executed at once.
ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""


def app_from_env(*, standalone: bool = False, **options: Any) -> StackShift:
    """The app of a worker subprocess: REDIS_URL (on a cluster run, a RedisCluster client
    unless `standalone`), STACKSHIFT_NAMESPACE, and `options` for StackShift."""
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    options.setdefault("partitions", int(os.environ.get("STACKSHIFT_TEST_PARTITIONS", "1")))
    if os.environ.get("STACKSHIFT_TEST_CLUSTER") == "1" and not standalone:
        return StackShift(redis=RedisCluster.from_url(url), namespace=NAMESPACE, **options)
    return StackShift(url, namespace=NAMESPACE, **options)


def obs_key(namespace: str, name: str) -> str:
    """The Redis key where jobs of `namespace` record the observation `name`."""
    return f"obs:{{{namespace}}}:{name}"


def obs(name: str) -> str:
    """The key where jobs of this process's namespace record `name`."""
    return obs_key(NAMESPACE, name)
