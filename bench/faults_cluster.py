"""The fault run's own services: a PostgreSQL cluster, a Redis server, two `serve` and two `worker` processes.

Everything here is private to one run (a temporary directory, free ports), so the nemesis can restart the
database or Redis without touching the shared servers other people's tests use. Every wait is on a condition
(a port answers, `pg_isready`, `/healthz`) under a named deadline.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# A cold initdb on a loaded 2-core machine takes a few seconds; a start after an immediate stop replays WAL.
POSTGRES_READY_DEADLINE_SECONDS = 90.0
# `serve` imports the app and opens its pools: seconds, more on a loaded machine.
API_READY_DEADLINE_SECONDS = 90.0
REDIS_READY_DEADLINE_SECONDS = 30.0
# A process asked to stop (SIGTERM) gets this long before it is killed.
STOP_GRACE_SECONDS = 15.0
# Connections of the run's own cluster: two API processes and two workers, each up to 40 (pool 20 + overflow 20),
# plus the checker and the nemesis.
POSTGRES_MAX_CONNECTIONS = 300
POLL_SECONDS = 0.1


def free_port() -> int:
    """A port nothing listens on now (bound to 0, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], deadline_seconds: float, what: str) -> None:
    """Poll `condition` until it holds; past the deadline raise, naming what was waited for."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if condition():
                return
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{what}: not within {deadline_seconds:g} s")


def _postgres_bin(name: str) -> str:
    """The PostgreSQL server binaries (Debian keeps them out of PATH, under /usr/lib/postgresql/N/bin)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    found = candidates[0] if candidates else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed")
    return found


def _as_postgres() -> dict[str, object]:
    """PostgreSQL refuses to run as root: when we are root, run its binaries as the `postgres` user."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


@dataclass
class PostgresCluster:
    """A throwaway cluster (initdb into `directory`) on a free port; restartable fast or immediate."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/wabapool"

    def _run(self, *command: str) -> None:
        completed = subprocess.run(command, capture_output=True, text=True, check=False, **_as_postgres())
        if completed.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({completed.returncode}): {completed.stderr.strip()}")

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # The run's directory is private to us (mkdtemp); the postgres user must be able to walk into it.
        self.directory.parent.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(_postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        # fsync off: the nemesis kills processes, never the machine, so what was written reaches the disk;
        # it keeps the run's disk traffic off the shared machine.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
            "max_connections": str(POSTGRES_MAX_CONNECTIONS),
            "fsync": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
            "log_min_messages": "fatal",
            "logging_collector": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self.start()
        self._run(_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "wabapool")

    def start(self) -> None:
        self._run(
            _postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "log"),
            "-w",
            "-t",
            str(int(POSTGRES_READY_DEADLINE_SECONDS)),
            "start",
        )
        wait_until(self.ready, POSTGRES_READY_DEADLINE_SECONDS, "PostgreSQL accepts connections")

    def stop(self, mode: str = "fast") -> None:
        """`fast` rolls back sessions and checkpoints; `immediate` is a crash (recovery replays WAL at start)."""
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str) -> None:
        self.stop(mode)
        self.start()

    def ready(self) -> bool:
        completed = subprocess.run(
            [_postgres_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        )
        return completed.returncode == 0

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop("immediate")


@dataclass
class RedisServer:
    """`redis-server` on a free port, no persistence: a restart comes back empty, as a cache may."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            shutil.which("redis-server") or "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ready, REDIS_READY_DEADLINE_SECONDS, "Redis answers PING")

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (and SIGCONT, in case the nemesis left it paused), then SIGKILL past the grace."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)
        process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def pii_keys() -> str:
    """A real key for this run (never the public development key)."""
    return "fault1:" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class AppProcess:
    """One `wabapool serve` or `wabapool worker` process that the nemesis may kill and restart."""

    kind: str  # "serve" | "worker"
    env: dict[str, str]
    log: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "wabapool.cli.main", self.kind]
        if self.kind == "serve":
            command += ["--no-migrate", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        self.starts += 1

    def wait_ready(self) -> None:
        if self.kind != "serve":
            return

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"serve on port {self.port} exited with {self.process.returncode}; see {self.log}")
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200

        deadline = time.monotonic() + API_READY_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            try:
                if up():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"serve on port {self.port} not healthy within {API_READY_DEADLINE_SECONDS:g} s")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would: no shutdown code runs."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


@dataclass
class Cluster:
    """PostgreSQL, Redis, two API processes and two workers, all this run's own."""

    directory: Path
    api_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    webhook_retry_seconds: str = ",".join(["0.2", "0.5"] + ["1"] * 40)
    extra_env: dict[str, str] = field(default_factory=dict)
    pii: str = field(default_factory=pii_keys, repr=False)
    postgres: PostgresCluster = field(init=False)
    redis: RedisServer = field(init=False)
    apis: list[AppProcess] = field(default_factory=list)
    workers: list[AppProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.postgres = PostgresCluster(self.directory / "pg")
        self.redis = RedisServer(self.directory)

    @classmethod
    def create(cls, extra_env: dict[str, str] | None = None) -> Cluster:
        return cls(Path(tempfile.mkdtemp(prefix="wabapool-faults-")), extra_env=dict(extra_env or {}))

    def env(self) -> dict[str, str]:
        variables = {
            "WABAPOOL_DATABASE_URL": self.postgres.url,
            "WABAPOOL_REDIS_URL": self.redis.url,
            "WABAPOOL_API_KEYS": f"faults:{self.api_key}",
            "WABAPOOL_JWT_SECRET": self.jwt_secret,
            "WABAPOOL_PII_KEYS": self.pii,
            "WABAPOOL_WEBHOOK_ALLOW_PRIVATE": "true",
            # Many short attempts: the receiver's faults last seconds, and the settle phase must see every
            # event delivered rather than dead-lettered.
            "WABAPOOL_WEBHOOK_RETRY_SECONDS": self.webhook_retry_seconds,
            "WABAPOOL_WEBHOOK_TIMEOUT_SECONDS": "3",
            "WABAPOOL_WORKER_POLL_SECONDS": "0.5",
            "WABAPOOL_LOG_LEVEL": "WARNING",
            **self.extra_env,
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith("WABAPOOL_")}
        return base | variables

    def start(self) -> None:
        self.postgres.init()
        self.redis.start()
        env = self.env()
        subprocess.run([sys.executable, "-m", "wabapool.cli.main", "migrate"], env=env, check=True, capture_output=True)
        logs = self.directory / "logs"
        logs.mkdir(exist_ok=True)
        self.apis = [AppProcess("serve", env, logs / f"serve{i}.log", port=free_port()) for i in range(2)]
        self.workers = [AppProcess("worker", env, logs / f"worker{i}.log") for i in range(2)]
        for process in (*self.apis, *self.workers):
            process.start()
        for api in self.apis:
            api.wait_ready()

    def run_cli(self, *arguments: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "wabapool.cli.main", *arguments],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def destroy(self, keep: bool = False) -> None:
        for process in (*self.apis, *self.workers):
            with contextlib.suppress(Exception):
                process.stop()
        self.redis.stop()
        self.postgres.destroy()
        if not keep:
            shutil.rmtree(self.directory, ignore_errors=True)
