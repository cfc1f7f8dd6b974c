"""Migrations: versioned, forward-only, safe to run twice and from two processes at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from core.migrate import MigrationError, discover, migrate
from ganzhi.database import MIGRATION_DIRS


def _write(directory: Path, name: str, sql: str) -> None:
    (directory / name).write_text(sql)


def test_applies_in_order_once(fresh_database, tmp_path):
    _write(tmp_path, "0001_first.sql", "create table first_t (id int);")
    _write(tmp_path, "0002_second.sql", "insert into first_t values (42);")
    url = fresh_database()
    with psycopg.connect(url) as conn:
        applied = migrate(conn, [tmp_path])
        again = migrate(conn, [tmp_path])
        rows = conn.execute("select version, name from schema_migration order by version").fetchall()
        values = conn.execute("select id from first_t").fetchall()
    assert [m.version for m in applied] == [1, 2]
    assert again == []
    assert rows == [(1, "first"), (2, "second")]
    assert values == [(42,)]


def test_a_failing_migration_leaves_nothing_half_applied(fresh_database, tmp_path):
    _write(tmp_path, "0001_ok.sql", "create table ok_t (id int);")
    _write(tmp_path, "0002_broken.sql", "create table half_t (id int); select no_such_function();")
    url = fresh_database()
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrate(conn, [tmp_path])
        versions = conn.execute("select version from schema_migration").fetchall()
        half = conn.execute("select to_regclass('half_t')").fetchone()[0]
    assert versions == [(1,)]
    assert half is None


def test_edited_migration_is_refused(fresh_database, tmp_path):
    _write(tmp_path, "0001_first.sql", "create table edited_t (id int);")
    url = fresh_database()
    with psycopg.connect(url) as conn:
        migrate(conn, [tmp_path])
        _write(tmp_path, "0001_first.sql", "create table edited_t (id bigint);")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            migrate(conn, [tmp_path])


def test_a_rewrite_naming_the_checksum_it_replaces_is_accepted(fresh_database, tmp_path):
    """A database migrated with the earlier text of 0002 (the TimescaleDB branch) upgrades to the one
    definition; a rewrite that does not name the old checksum is still refused."""
    old = "create table rewritten_t (id int);"
    _write(tmp_path, "0001_first.sql", old)
    url = fresh_database()
    with psycopg.connect(url) as conn:
        migrate(conn, [tmp_path])
        old_checksum = discover([tmp_path])[0].checksum
        _write(tmp_path, "0001_first.sql", f"-- replaces checksum {old_checksum}\ncreate table rewritten_t (id int);")
        assert migrate(conn, [tmp_path]) == []
        _write(tmp_path, "0001_first.sql", f"-- replaces checksum {'0' * 64}\ncreate table rewritten_t (id int);")
        with pytest.raises(MigrationError, match="edited after it was applied"):
            migrate(conn, [tmp_path])


def test_the_readings_migration_accepts_databases_made_with_its_timescale_branch():
    readings = next(m for m in discover(MIGRATION_DIRS) if m.version == 2)
    assert "ef43aae8532aab2f6735886f63bcb324adb25df8e68c4525d4f6795a539107e3" in readings.accepted_checksums


def test_repeated_version_and_bad_names_are_refused(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    _write(first, "0001_x.sql", "select 1;")
    _write(second, "0001_y.sql", "select 1;")
    with pytest.raises(MigrationError, match="appears twice"):
        discover([first, second])
    _write(second, "1_bad.sql", "select 1;")
    with pytest.raises(MigrationError, match=r"is not NNNN_name\.sql"):
        discover([second])


def test_project_migrations_run_concurrently_from_two_processes(fresh_database):
    url = fresh_database()
    env_code = (
        "import sys, psycopg; from core.migrate import migrate; from ganzhi.database import MIGRATION_DIRS; "
        "c = psycopg.connect(sys.argv[1]); print(len(migrate(c, MIGRATION_DIRS)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", env_code, url], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outputs) == ["0", str(len(discover(MIGRATION_DIRS)))]
    with psycopg.connect(url) as conn:
        count = conn.execute("select count(*) from schema_migration").fetchone()[0]
    assert count == len(discover(MIGRATION_DIRS))
