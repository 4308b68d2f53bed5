"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, a data folder
of its own, loopback only, stopped at the end. Never a mock.

PostgreSQL refuses to run as root, as CI does: there the server runs as the `postgres` user
that Debian's package creates (``runuser``), with its data folder handed to it. Each test
gets a database of its own (:meth:`PostgresServer.database`).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def binaries() -> Path:
    """The folder of initdb and pg_ctl (Debian keeps them off the PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(
        Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    on_path = shutil.which("pg_ctl")
    if found:
        return Path(found[-1]).parent
    if on_path:
        return Path(on_path).parent
    pytest.fail("PostgreSQL is missing (no pg_ctl): run `make setup`, which installs Debian's "
                "postgresql package")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bin = binaries()
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bookjob-pg-"))
        self.data = self.folder / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                pytest.fail("running as root needs runuser (util-linux) to start PostgreSQL")
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("no `postgres` user to run PostgreSQL as: run `make setup` "
                            "(Debian's postgresql package creates it)")
            shutil.chown(self.folder, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{command[0]} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "bookjob", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-instructions")
        options = (f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.folder / "server.log"), "start")
        return self

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://bookjob@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql)

    def database(self) -> str:
        """A new empty database: its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
