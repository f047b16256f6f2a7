"""Real PostgreSQL, Redis and collector processes on loopback for the network sink tests.

Each server gets a free port and a data directory in a temp folder, can be
stopped and started again on the same port and data (that is what the fault
tests do), and is removed at the end. The Debian packages ``postgresql`` and
``redis-server`` provide the binaries; ``make system-deps`` installs them.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

COLLECTOR_SCRIPT = Path(__file__).with_name("collector.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


def http_up(url: str) -> bool:
    """Does ``url`` answer 200 yet? For wait_for while a server starts."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _missing(binary: str, package: str) -> RuntimeError:
    return RuntimeError(f"{binary} not found: install Debian's {package} (`make system-deps`)")


# ---------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise _missing("initdb", "postgresql")
    return Path(initdb).parent


class PostgresServer:
    """A throw-away cluster; trust auth on 127.0.0.1, database ``postgres``.

    PostgreSQL refuses to run as root, so as root it runs as the ``postgres``
    user in a directory that user owns. Unless ``durable``, fsync is off (these data
    die with the test), but commits are synchronous as in production: a crash of
    the server (not of the machine) keeps what was committed.
    """

    def __init__(self, durable: bool = False) -> None:
        self.durable = durable  # fsync as in production (for bench/); tests do without
        self.bin = _pg_bin()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pmw-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bin / tool), *args], cwd=self.dir,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c max_connections=50"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-o", options,
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends sessions cleanly; ``immediate`` is a crash (recovery on start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []

    def remove(self) -> None:
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- Redis


class RedisServer:
    """redis-server without persistence unless asked: ``stop(save=True)`` dumps, ``start`` reloads."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise _missing("redis-server", "redis-server")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pmw-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--logfile", str(self.dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(self._pong, f"redis-server on port {self.port}")
        except BaseException:
            self.process.kill()
            self.process.wait()
            self.process = None
            raise

    def _pong(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
        return self.command("PING") == "+PONG"

    def command(self, *words: str) -> str:
        """One inline command, its first reply line (enough for PING and SHUTDOWN)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall((" ".join(words) + "\r\n").encode())
            return sock.recv(4096).decode().split("\r\n")[0]

    def stop(self, save: bool = False) -> None:
        """SHUTDOWN SAVE writes dump.rdb, which the next start loads; NOSAVE loses the data."""
        if self.process is None:
            return
        try:
            self.command("SHUTDOWN", "SAVE" if save else "NOSAVE")
        except OSError:
            pass  # the connection closes as the server goes
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- HTTP collector


class ScriptServer:
    """One of the test scripts beside this file in its own process on a free loopback port."""

    script: Path
    what = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def arguments(self) -> list[str]:
        return ["--port", str(self.port)]

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(self.script), *self.arguments()],
                                        stdin=subprocess.DEVNULL)
        try:
            wait_for(self._healthy, f"{self.what} on port {self.port}")
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.what} exited")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/_health", timeout=2).status_code == 204
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def remove(self) -> None:
        self.stop()


S = TypeVar("S", bound=ScriptServer)


class CollectorServer(ScriptServer):
    """tests/collector.py in its own process; what it accepted survives stop and start."""

    script = COLLECTOR_SCRIPT
    what = "collector"

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="pmw-collector-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/batch"

    def arguments(self) -> list[str]:
        return ["--port", str(self.port), "--dir", str(self.dir)]

    def answer(self, status: int = 200, delay: float = 0.0, retry_after: str | None = None,
               require_auth: str | None = None) -> None:
        """How the collector answers from now on (200 and no delay is normal service)."""
        behaviour = {"status": status, "delay": delay, "retry_after": retry_after, "require_auth": require_auth}
        response = httpx.post(f"http://127.0.0.1:{self.port}/_control", json=behaviour, timeout=5)
        assert response.status_code == 204

    def batches(self) -> list[dict[str, Any]]:
        """Every accepted batch in order: ``{"auth", "sentAt", "batch"}``."""
        store = self.dir / "batches.jsonl"
        if not store.exists():
            return []
        return [json.loads(line) for line in store.read_text("utf-8").splitlines()]

    def messages(self) -> list[dict[str, Any]]:
        return [message for batch in self.batches() for message in batch["batch"]]

    def clear(self) -> None:
        (self.dir / "batches.jsonl").unlink(missing_ok=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- CRM


class CRMServer(ScriptServer):
    """tests/crm.py in its own process: people and accounts as JSON, latency, errors, outages."""

    script = Path(__file__).with_name("crm.py")
    what = "CRM"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, **settings: Any) -> None:
        """people={key: fields}, accounts={...}, status=, delay=, require_auth=, forget=True."""
        assert httpx.post(f"{self.base}/_control", json=settings, timeout=5).status_code == 204

    def requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(f"{self.base}/_requests", timeout=5).json())


# ---------------------------------------------------------------- fixtures (import them in a test module)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def pg(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The session's PostgreSQL, started again after a test that stopped it."""
    if not postgres.running:
        postgres.start()
    yield postgres
    if not postgres.running:
        postgres.start()


@pytest.fixture(scope="session")
def redis_session() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def redis_server(redis_session: RedisServer) -> Iterator[RedisServer]:
    """The session's Redis, emptied, and started again after a test that stopped it."""
    if redis_session.process is None:
        redis_session.start()
    redis_session.command("FLUSHALL")
    yield redis_session
    if redis_session.process is None:
        redis_session.start()


def _whole_session(server: S) -> Iterator[S]:
    server.start()
    yield server
    server.remove()


def _running(server: S, reset: Callable[[S], None]) -> Iterator[S]:
    """The session's server, started again after a test that stopped it, reset before and after."""
    if server.process is None:
        server.start()
    reset(server)
    yield server
    if server.process is None:
        server.start()
    reset(server)


def _normal_service(collector: CollectorServer) -> None:
    collector.answer()
    collector.clear()


@pytest.fixture(scope="session")
def collector_session() -> Iterator[CollectorServer]:
    yield from _whole_session(CollectorServer())


@pytest.fixture
def collector(collector_session: CollectorServer) -> Iterator[CollectorServer]:
    """The session's collector, answering 200 with an empty store."""
    yield from _running(collector_session, _normal_service)


@pytest.fixture(scope="session")
def crm_session() -> Iterator[CRMServer]:
    yield from _whole_session(CRMServer())


@pytest.fixture
def crm(crm_session: CRMServer) -> Iterator[CRMServer]:
    """The session's CRM, knowing nobody and answering at once."""
    yield from _running(crm_session, lambda crm: crm.control(forget=True, status=200, delay=0, require_auth=None))
