"""The nemesis: breaks one thing at a random moment, records what it did, and puts it back.

Kinds (each run draws them in shuffled rounds, so a short run sees every kind a few times):
`api_kill` (SIGKILL an API process, restart it), `pg_restart_fast`, `pg_restart_immediate`, `pg_terminate`
(every connection of the run's database terminated), `redis_restart`, `receiver_fail` / `receiver_hang` /
`receiver_slow` / `receiver_huge` (the webhook receiver misbehaves for a window), `worker_pause` (SIGSTOP, then
SIGCONT), `worker_kill` (SIGKILL, restart), `hostile` (the hostile tenant's load for a window).

Windowed faults (receiver, pause, hostile) end on their own after their window, while the next fault may
already run: faults overlap, as they do in production.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bench.faults_cluster import Cluster, _postgres_bin
from bench.faults_receiver import Receiver

KINDS = (
    "api_kill",
    "pg_restart_fast",
    "pg_restart_immediate",
    "pg_terminate",
    "redis_restart",
    "receiver_fail",
    "receiver_hang",
    "receiver_slow",
    "receiver_huge",
    "worker_pause",
    "worker_kill",
    "hostile",
)
# How long a windowed fault lasts, and how long Redis stays down: seconds, like a real blip.
WINDOW_SECONDS = (1.5, 4.0)
# The receiver's windows are longer: events come a few a second, and a window must catch some.
RECEIVER_WINDOW_SECONDS = (3.0, 8.0)
REDIS_DOWN_SECONDS = (0.5, 2.0)
# Between two faults.
GAP_SECONDS = (0.5, 2.5)


@dataclass
class Fault:
    kind: str
    started: float
    ended: float = 0.0
    target: str = ""
    error: str | None = None


@dataclass
class Nemesis:
    cluster: Cluster
    receiver: Receiver
    hostile_on: Any  # multiprocessing.Event
    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _windows: list[threading.Timer] = field(default_factory=list)
    _paused: set[int] = field(default_factory=set)

    def run(self, seconds: float, stop: threading.Event, min_rounds: int = 0) -> None:
        """Inject faults for `seconds` (or until `stop`), each kind in shuffled rounds, and at least `min_rounds`
        whole rounds however long they take (a slow machine restarts processes slowly)."""
        deadline = time.monotonic() + seconds
        order: list[str] = []
        rounds = 0
        while (time.monotonic() < deadline or rounds < min_rounds) and not stop.is_set():
            if not order:
                order = list(KINDS)
                self.rng.shuffle(order)
            self.inject(order.pop())
            if not order:
                rounds += 1
            stop.wait(self.rng.uniform(*GAP_SECONDS))

    def inject(self, kind: str) -> Fault:
        fault = Fault(kind, time.time())
        try:
            getattr(self, f"_{kind}")(fault)
        except Exception as exc:  # recorded: a fault the run could not inject or recover from is reported
            fault.error = f"{type(exc).__name__}: {exc}"
        fault.ended = fault.ended or time.time()
        with self._lock:
            self.faults.append(fault)
        return fault

    # -- processes --------------------------------------------------------------------------------------------

    def _api_kill(self, fault: Fault) -> None:
        api = self.rng.choice(self.cluster.apis)
        fault.target = f"serve:{api.port}"
        api.kill()
        api.start()
        api.wait_ready()

    def _worker_kill(self, fault: Fault) -> None:
        index = self.rng.randrange(len(self.cluster.workers))
        worker = self.cluster.workers[index]
        fault.target = f"worker{index}"
        worker.kill()
        self._paused.discard(index)
        worker.start()

    def _worker_pause(self, fault: Fault) -> None:
        candidates = [i for i in range(len(self.cluster.workers)) if i not in self._paused]
        if not candidates:
            fault.error = "every worker already paused"
            return
        index = self.rng.choice(candidates)
        worker = self.cluster.workers[index]
        fault.target = f"worker{index}"
        self._paused.add(index)
        worker.signal(signal.SIGSTOP)

        def resume() -> None:
            worker.signal(signal.SIGCONT)
            self._paused.discard(index)

        self._window(fault, resume)

    # -- PostgreSQL and Redis ---------------------------------------------------------------------------------

    def _pg_restart_fast(self, fault: Fault) -> None:
        self.cluster.postgres.restart("fast")

    def _pg_restart_immediate(self, fault: Fault) -> None:
        self.cluster.postgres.restart("immediate")

    def _pg_terminate(self, fault: Fault) -> None:
        sql = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = 'wabapool' AND pid <> pg_backend_pid()"
        )
        completed = subprocess.run(
            [_postgres_bin("psql"), self.cluster.postgres.admin_url, "-Atc", sql],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        fault.target = f"{completed.stdout.strip()} connections"

    def _redis_restart(self, fault: Fault) -> None:
        self.cluster.redis.stop()
        time.sleep(self.rng.uniform(*REDIS_DOWN_SECONDS))  # the outage itself, not a wait for an outcome
        self.cluster.redis.start()

    # -- the receiver and the hostile tenant -------------------------------------------------------------------

    def _receiver(self, fault: Fault, mode: str) -> None:
        self.receiver.set_mode(mode)
        self._window(fault, lambda: self.receiver.set_mode("ok"), RECEIVER_WINDOW_SECONDS)

    def _receiver_fail(self, fault: Fault) -> None:
        self._receiver(fault, "fail")

    def _receiver_hang(self, fault: Fault) -> None:
        self._receiver(fault, "hang")

    def _receiver_slow(self, fault: Fault) -> None:
        self._receiver(fault, "slow")

    def _receiver_huge(self, fault: Fault) -> None:
        self._receiver(fault, "huge")

    def _hostile(self, fault: Fault) -> None:
        self.hostile_on.set()
        self._window(fault, self.hostile_on.clear)

    def _window(self, fault: Fault, end: Any, window: tuple[float, float] = WINDOW_SECONDS) -> None:
        seconds = self.rng.uniform(*window)

        def close() -> None:
            end()
            fault.ended = time.time()

        timer = threading.Timer(seconds, close)
        timer.daemon = True
        self._windows.append(timer)
        timer.start()
        fault.ended = time.time() + seconds

    def heal(self) -> list[str]:
        """End every window now and bring every process back; returns what could not be healed."""
        problems: list[str] = []
        for timer in self._windows:
            timer.cancel()
        self.receiver.set_mode("ok")
        self.hostile_on.clear()
        for worker in self.cluster.workers:
            worker.signal(signal.SIGCONT)
        self._paused.clear()
        if not self.cluster.postgres.ready():
            try:
                self.cluster.postgres.start()
            except Exception as exc:
                problems.append(f"PostgreSQL did not come back: {exc}")
        if self.cluster.redis.process is None or self.cluster.redis.process.poll() is not None:
            self.cluster.redis.start()
        for process in (*self.cluster.apis, *self.cluster.workers):
            if process.process is None or process.process.poll() is not None:
                problems.append(f"{process.kind} {process.port or ''} had exited ({process.log}); restarted")
                process.start()
        for api in self.cluster.apis:
            try:
                api.wait_ready()
            except Exception as exc:
                problems.append(str(exc))
        return problems
