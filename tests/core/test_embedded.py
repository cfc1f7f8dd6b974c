"""The embedded PostgreSQL never opens root-owned directories to other users, admits only password logins, and
dies with the process that started it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from core.embedded import EmbeddedPostgres, EmbeddedPostgresError, kept_password, write_private
from ganzhi.benchkit import free_port


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_refuses_a_data_dir_behind_a_private_directory():
    private = Path(tempfile.mkdtemp(prefix="ganzhi-private-"))  # mode 0700, like root's home
    try:
        server = EmbeddedPostgres(private / "var" / "pgdata", free_port())
        with pytest.raises(EmbeddedPostgresError, match="cannot enter") as caught:
            server.start()
        assert "set DATABASE_URL" in str(caught.value)
        assert stat.S_IMODE(private.stat().st_mode) == 0o700  # left as it was
    finally:
        for path in sorted(private.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        private.rmdir()


def _data_dir() -> Path:
    base = Path(tempfile.mkdtemp(prefix="ganzhi-embedded-"))
    base.chmod(0o755)  # the server's own user must be able to enter it when we are root
    return base / "pgdata"


def _refused_without_password(server: EmbeddedPostgres) -> str:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{server.port}/postgres", connect_timeout=5).close()
    return str(refused.value)


def test_logins_need_the_generated_password_kept_private():
    """Issue 10 §5: the embedded server trusted every local user on 127.0.0.1."""
    server = EmbeddedPostgres(_data_dir(), free_port())
    url = server.start()
    try:
        assert "password" in _refused_without_password(server)
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert server.password_file.read_text() in url
        with psycopg.connect(url) as conn:
            assert conn.execute("select current_user").fetchone()[0] == "postgres"
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def test_the_services_role_is_no_superuser_and_keeps_its_private_password():
    """Issue 11 §3: `up`'s services log in as ``ganzhi_app``, which owns nothing, not as the superuser."""
    server = EmbeddedPostgres(_data_dir(), free_port())
    server.start()
    try:
        url = server.application_url()
        password_file = server.data_dir.with_name("pgdata.app-password")
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600 and password_file.read_text() in url
        assert server.application_url() == url  # a second start keeps the password
        with psycopg.connect(url) as conn:
            assert conn.execute("select current_user, rolsuper, rolcreaterole, rolcreatedb from pg_roles "
                                "where rolname = current_user").fetchone() == ("ganzhi_app", False, False, False)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def test_a_data_dir_that_trusted_everyone_is_brought_over_to_passwords():
    server = EmbeddedPostgres(_data_dir(), free_port())
    server.start()
    server.stop()
    hba = server.data_dir / "pg_hba.conf"  # as earlier versions left it: no password, everyone trusted
    hba.write_text("host all all 127.0.0.1/32 trust\n")
    server.password_file.unlink()
    try:
        url = server.start()
        assert "password" in _refused_without_password(server)
        with psycopg.connect(url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def test_empty_password_files_left_by_a_crash_get_new_passwords():
    """Earlier versions created a password file, then wrote it: a crash between left it empty, and every later
    start set and used the password '' (no login) until someone deleted the file."""
    server = EmbeddedPostgres(_data_dir(), free_port())
    server.start()
    app_password = server.data_dir.with_name("pgdata.app-password")
    try:
        server.application_url()
        app_password.write_text("")
        with psycopg.connect(server.application_url()) as conn:
            assert conn.execute("select current_user").fetchone() == ("ganzhi_app",)
        assert len(app_password.read_text()) >= 32 and stat.S_IMODE(app_password.stat().st_mode) == 0o600
        server.stop()
        (server.data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")  # as initdb left it
        server.password_file.write_text("")
        with psycopg.connect(server.start()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert "password" in _refused_without_password(server)
        assert len(server.password_file.read_text()) >= 32
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def test_a_password_file_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    kept = tmp_path / "pgdata.password"
    write_private(kept, "old")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600

    def crash(descriptor: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_private(kept, "new")
    assert kept.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["pgdata.password"]
    monkeypatch.undo()
    assert kept_password(kept) == ("old", False)


def test_a_server_left_running_by_a_killed_parent_is_stopped_before_starting():
    """Issue 10 §3: a new `up` must cope with what a killed one left over."""
    data_dir = _data_dir()
    port = free_port()
    started = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from core.embedded import EmbeddedPostgres
        server = EmbeddedPostgres(Path({str(data_dir)!r}), {port})
        server.start()
        print(server._server.pid, flush=True)
        signal.pause()
    """)], stdout=subprocess.PIPE, text=True)
    postmaster = int(started.stdout.readline())
    started.kill()  # the parent dies at once: the server gets its fast shutdown from the kernel
    started.wait()
    started.stdout.close()
    server = EmbeddedPostgres(data_dir, port)
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{postmaster}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{postmaster}").exists(), "the server outlived its parent"
        with psycopg.connect(server.start()) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        server.stop()
        shutil.rmtree(data_dir.parent, ignore_errors=True)
