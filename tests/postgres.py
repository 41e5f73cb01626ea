"""A throw-away PostgreSQL server for tests: initdb + pg_ctl in a temp dir on a free port.

``initdb`` refuses to run as root, so as root every server command runs as the ``postgres``
user (created by the Debian package). The server listens on 127.0.0.1 only, with password
authentication, and is stopped (and its folder removed) when the context exits, also when the
test inside failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "test-secret"
DATABASE = "optuna"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    database: str
    pg_ctl: tuple[str, ...] = ()  # the pg_ctl command line (as the postgres user) up to "stop"
    options: str = ""  # server options given to pg_ctl start

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    def stop(self) -> None:
        """Stop the server at once (as a crash or a network cut looks to clients)."""
        subprocess.run([*self.pg_ctl, "-m", "immediate", "-w", "stop"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    def start(self) -> None:
        subprocess.run([*self.pg_ctl, "-o", self.options, "-w", "start"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(bin_dir: Path) -> Iterator[PostgresServer]:
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    user = "postgres" if as_root else os.environ.get("USER", "postgres")
    root = Path(tempfile.mkdtemp(prefix="pgtest-"))
    data, sockets, pwfile = root / "data", root / "sock", root / "pw"
    sockets.mkdir()
    pwfile.write_text(PASSWORD + "\n")
    if as_root:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        shutil.chown(pwfile, "postgres")
    port = free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, text=True, timeout=120)

    started = False
    try:
        run(
            str(bin_dir / "initdb"),
            "-D", str(data), "-U", user, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )  # fmt: skip
        options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
            "-w", "start")  # fmt: skip
        started = True
        run(str(bin_dir / "createdb"), "-h", str(sockets), "-p", str(port), "-U", user, DATABASE)
        pg_ctl = (*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"))
        yield PostgresServer("127.0.0.1", port, user, PASSWORD, DATABASE, pg_ctl, options)
    finally:
        if started:  # a test may have stopped it already: then this fails, quietly
            with contextlib.suppress(subprocess.SubprocessError):
                run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` (empty: no Optuna tables yet) and
    return its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)
