"""The short fault run (issue 20): clients move money while a nemesis breaks things; the checker finds nothing.

`python -m bench.faults --short` on its own PostgreSQL cluster and Redis (free ports, a temporary directory):
two API processes and two workers, a webhook receiver, client processes with histories, a hostile tenant, and
about a minute of faults of every kind. The checker's table is printed when it fails.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from bench.faults_nemesis import KINDS

ROOT = Path(__file__).resolve().parents[2]
# The run takes two to three minutes on a loaded 2-core machine (setup, latency slices, a minute of faults,
# the settle); past this something hangs, and the run's own deadlines should have said what.
FAULT_RUN_DEADLINE_SECONDS = 900
# The bench's goal is 3x (issue 20, a benchmark figure); as a timed test on a shared, loaded 2-core machine the
# bound is generous: it catches a tenant that starves the others (the issue measured 117x), not noise.
P99_RATIO_LIMIT = 10


def _require_binaries() -> None:
    missing = [name for name in ("initdb", "pg_ctl", "redis-server") if not _found(name)]
    if not missing:
        return
    message = f"the fault run needs {', '.join(missing)} (its own PostgreSQL cluster and Redis)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def _found(name: str) -> bool:
    return bool(shutil.which(name) or glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))


def test_the_short_fault_run_ends_with_no_violation(tmp_path: Path) -> None:
    _require_binaries()
    result_path = tmp_path / "faults.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WABAPOOL_")}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.faults",
            "--short",
            "--seed",
            "20",
            "--json",
            str(result_path),
            "--p99-limit",
            str(P99_RATIO_LIMIT),
        ],
        cwd=ROOT,
        env={**env, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=FAULT_RUN_DEADLINE_SECONDS,
        check=False,
    )
    report = f"{completed.stdout}\n{completed.stderr[-5000:]}"
    assert result_path.exists(), report
    result = json.loads(result_path.read_text())
    assert result["violations"] == [], report
    assert completed.returncode == 0, report
    injected = Counter(fault["kind"] for fault in result["faults"])
    assert all(injected[kind] >= 2 for kind in KINDS), (injected, report)
    told = {(row["op"], row["told"]) for row in result["outcomes"]}
    assert ("deduct", "applied") in told and ("refund", "applied") in told and ("top_up", "applied") in told, report
