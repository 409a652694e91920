"""`TemporaryPostgres`: a throwaway PostgreSQL server for tests, notebooks and benchmarks.

Debian's PostgreSQL (``apt-get install postgresql``; `make test` installs it when missing) is
started from its own binaries: ``initdb`` into a temporary directory and ``pg_ctl`` on a free
loopback port, as the ``postgres`` user when run as root (PostgreSQL refuses root), with
``fsync=off`` (a test database need not survive a power cut), password login over TCP. Stopped
and removed by `stop()` or at the end of a ``with`` block.

    with TemporaryPostgres() as server:
        url = server.database()  # a new, empty database: postgresql://postgres:...@127.0.0.1:P/db
        store = Store.open(url)

`PostgresUnavailable` (with the reason, naming the missing package) when no server can be
started here; tests skip on it outside CI.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresUnavailable", "TemporaryPostgres", "postgres_binaries"]

USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says what is missing."""


def postgres_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (Debian's, the newest version)."""
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(found) / "initdb").exists():
            return Path(found)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PostgresUnavailable(
        "PostgreSQL is not installed: `apt-get install postgresql` (Debian's package; "
        "`make test` installs it)"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TemporaryPostgres:
    """A throwaway server (see the module docstring). `url` is its ``postgres`` database's."""

    def __init__(self) -> None:
        self.bin = postgres_binaries()
        self.password = secrets.token_hex(8)
        self.port = 0
        self.directory: Path | None = None
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str, *, user: str = USER, password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://{user}:{secret}@127.0.0.1:{self.port}/{name}"

    def _run(self, *command: str) -> None:
        argv = [str(self.bin / command[0]), *command[1:]]
        if self._as_postgres:
            argv = ["runuser", "-u", USER, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{command[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout}"
            )

    def start(self) -> TemporaryPostgres:
        """Create and start the server; returns self."""
        self.directory = Path(tempfile.mkdtemp(prefix="kaizen-postgres-"))
        data, sockets = self.directory / "data", self.directory / "sockets"
        sockets.mkdir()
        secret = self.directory / "password"
        secret.write_text(self.password)
        if self._as_postgres:
            shutil.chown(self.directory, USER)
            shutil.chown(sockets, USER)
            shutil.chown(secret, USER)
        self._run(
            "initdb", "-D", str(data), "-U", USER, "--auth-local=trust",
            "--auth-host=scram-sha-256", f"--pwfile={secret}", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self.port = _free_port()
        options = (
            f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.directory / "log"),
                  "-w", "-t", "60", "start")  # fmt: skip
        return self

    def database(self, name: str | None = None) -> str:
        """A new, empty database on this server; its URL."""
        import psycopg

        name = name or f"kaizen_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run `sql` as the superuser (roles, grants, terminating connections)."""
        import psycopg

        with psycopg.connect(self.database_url(database), autocommit=True) as connection:
            connection.execute(sql.encode())

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``): every connection to it is lost."""
        assert self.directory is not None, "the server was never started"
        # (-l: the server's output goes to its log, not to the pipe pg_ctl's caller reads)
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-l", str(self.directory / "log"),
                  "-m", "fast", "-w", "-t", "60", "restart")  # fmt: skip

    def stop(self) -> None:
        """Stop the server at once and remove its files."""
        if self.directory is None:
            return
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def __enter__(self) -> TemporaryPostgres:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
