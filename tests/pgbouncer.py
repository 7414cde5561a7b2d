"""A PgBouncer of the test's own, in transaction pooling mode, in front of the test database.

Started on a free port with its files in a directory of its own; as root it runs as the `postgres`
user (PgBouncer refuses to run as root). Under CI=true a missing `pgbouncer` binary is a failure
(`.ci/run` installs the Debian package).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

# How long PgBouncer may take to listen: it starts in milliseconds; past this it is not coming up.
START_SECONDS = 15.0
# Server connections per database/user: fewer than the service's pool, so clients share them.
POOL_SIZE = 8
# The service's session settings, given to each server connection by PgBouncer (not by the clients).
CONNECT_QUERY = "SET lock_timeout = 2000; SET statement_timeout = 10000"


def require_pgbouncer() -> str:
    binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if binary:
        return binary
    message = "pgbouncer is not installed (apt-get install pgbouncer)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def pgbouncer(postgres_url: str) -> Iterator[str]:
    """PgBouncer in transaction mode in front of `postgres_url`'s database; yields the URL to reach it through."""
    binary = require_pgbouncer()
    target = make_url(postgres_url)
    port = _free_port()
    directory = Path(tempfile.mkdtemp(prefix="wabapool-pgbouncer-"))
    user = target.username or "postgres"
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{target.database} = host={target.host or '127.0.0.1'} port={target.port or 5432} "
        f"dbname={target.database} connect_query='{CONNECT_QUERY}'\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"admin_users = {user}\n"
        "stats_period = 1\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {POOL_SIZE}\n"
        "max_client_conn = 500\n"
        # Before 1.21 PgBouncer cannot keep clients' prepared statements apart: each server connection
        # is reset after every transaction, so the uniquely named ones SQLAlchemy prepares do not pile up.
        "server_reset_query = DISCARD ALL\n"
        "server_reset_query_always = 1\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
    )
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:
        os.chmod(directory, 0o777)
        for path in directory.iterdir():
            os.chmod(path, 0o666)
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(port, process, directory)
        url = target.set(port=port, host="127.0.0.1").update_query_dict({"pooling": "transaction"})
        yield url.render_as_string(hide_password=False)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def transactions_served(url: str) -> int:
    """How many transactions PgBouncer has passed to the server for `url`'s database (its SHOW STATS)."""
    parsed = make_url(url)
    output = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(parsed.port), "-U", parsed.username or "postgres", "-At", "-F", "|"]
        + ["-c", "SHOW STATS", "pgbouncer"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    for line in output.splitlines():
        fields = line.split("|")
        if fields[0] == parsed.database:
            return int(fields[1])  # total_xact_count
    raise AssertionError(f"no stats for {parsed.database}: {output}")


def _wait_listening(port: int, process: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (directory / "pgbouncer.log").read_text() if (directory / "pgbouncer.log").exists() else ""
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise AssertionError(f"pgbouncer exited with {process.returncode}: {stderr}{log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise AssertionError("pgbouncer did not listen in time")
