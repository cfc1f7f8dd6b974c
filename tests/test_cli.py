"""The `ganzhi` command, run as a real process against the test database."""

from __future__ import annotations

import os
import subprocess
import sys

from registry import codes


def _ganzhi(*args: str, db_url: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if db_url:
        env["DATABASE_URL"] = db_url
    return subprocess.run([sys.executable, "-m", "ganzhi", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_code_check_exit_codes():
    good = codes.make("231202", "21", 17).value
    ok = _ganzhi("code", "check", good)
    assert ok.returncode == 0 and "231202-21-000017-B  ok" in ok.stdout
    bad = _ganzhi("code", "check", good, good[:-1] + "C")
    assert bad.returncode == 1
    assert "check character is 'C' but should be 'B'" in bad.stderr


def test_ledger_import_dry_run_then_apply_then_export(db_url, conn, tmp_path):
    sheet = tmp_path / "普查.csv"
    sheet.write_bytes("设备名称,设备类型,经度,纬度\r\n北林空气站,空气质量监测微站,126.98,46.64\r\n".encode("gbk"))
    dry = _ganzhi("ledger", "import", str(sheet), "--dry-run", db_url=db_url)
    assert dry.returncode == 0, dry.stderr
    assert "would create 1" in dry.stdout and "dry run, nothing written" in dry.stdout
    applied = _ganzhi("ledger", "import", str(sheet), "--actor", "普查员", db_url=db_url)
    assert applied.returncode == 0 and "created 1" in applied.stdout
    out = tmp_path / "out.geojson"
    exported = _ganzhi("ledger", "export", "--format", "geojson", "--out", str(out), db_url=db_url)
    assert exported.returncode == 0 and "wrote 1 terminals" in exported.stdout
    assert "北林空气站" in out.read_text(encoding="utf-8")


def test_ledger_import_with_bad_rows_exits_non_zero(db_url, conn, tmp_path):
    sheet = tmp_path / "bad.csv"
    sheet.write_text("设备名称,设备类型,经度,纬度\nx,空气质量监测微站,126.63,45.75\n", encoding="utf-8")
    result = _ganzhi("ledger", "import", str(sheet), db_url=db_url)
    assert result.returncode == 1
    assert "row 2, 经度: point (126.63, 45.75) lies outside Suihua" in result.stderr
    assert "NOT applied" in result.stdout


def test_db_migrate_is_idempotent(db_url):
    result = _ganzhi("db", "migrate", db_url=db_url)
    assert result.returncode == 0 and "schema is up to date" in result.stdout


def test_unreachable_database_is_a_clear_error():
    result = _ganzhi("ledger", "export", "--out", "/tmp/x.csv", db_url="postgresql://postgres@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr and "Traceback" not in result.stderr


def test_firms_import_and_heat_sources_from_the_command_line(db_url, conn, tmp_path):
    import datetime as dt

    from simulators.hotspots import firms_csv, firms_row

    added = _ganzhi("heat-source", "add", "绥化热电厂", "--kind", "power_plant", "--lat", "46.60", "--lon", "127.00",
                    "--radius", "1500", db_url=db_url)
    assert added.returncode == 0 and "radius 1500 m" in added.stdout, added.stderr
    now = dt.datetime.now(dt.UTC)
    sheet = tmp_path / "viirs.csv"
    sheet.write_text(firms_csv([firms_row(46.70, 126.80, now), firms_row(46.601, 127.001, now)]), encoding="utf-8")
    imported = _ganzhi("firms", str(sheet), db_url=db_url)
    assert imported.returncode == 0, imported.stderr
    assert "2 rows, 1 stored" in imported.stdout and "1 at known heat sources" in imported.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("lat,lon\n46.7,126.8\n", encoding="utf-8")
    refused = _ganzhi("firms", str(bad), db_url=db_url)
    assert refused.returncode == 1 and "missing column" in refused.stderr and "dead-lettered" in refused.stderr


def test_ledger_demo_refuses_the_public_demo_key_in_a_deployment(db_url, conn):
    """Issue 10 §5: the demo devices' passwords and HJ 212 MN/PW follow from the key; DATABASE_URL is a deployment."""
    env = {name: value for name, value in os.environ.items() if name != "GANZHI_DEMO_SECRET"}
    refused = subprocess.run([sys.executable, "-m", "ganzhi", "ledger", "demo"], env={**env, "DATABASE_URL": db_url},
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "GANZHI_DEMO_SECRET" in refused.stderr
    assert conn.execute("select count(*) from terminal").fetchone() == (0,)
    own = subprocess.run([sys.executable, "-m", "ganzhi", "ledger", "demo"], capture_output=True, text=True,
                         env={**env, "DATABASE_URL": db_url, "GANZHI_DEMO_SECRET": "a-secret-of-our-own-" * 2},
                         timeout=120)
    assert own.returncode == 0, own.stderr
    assert conn.execute("select count(*) from terminal").fetchone()[0] > 0


_IMPORTED = """
import sys
from ganzhi.cli import main
try:
    main({args!r}, standalone_mode=False)
finally:
    print(" ".join(sorted(sys.modules)), file=sys.stderr)
"""
HEAVY = ("numpy", "shapely", "registry.accounts", "registry.geo", "registry.demo", "openpyxl", "segno", "api",
         "fastapi", "uvicorn", "ganzhi.bench_commands", "ganzhi.account_commands", "ingest.worker")
"""What one command or another needs, and a worker `up` starts must not import: ten of them start at once after a
restart of `up`, on a loaded box (issue 10 §6: ingest back within 10 s)."""


def _modules_imported_by(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", _IMPORTED.format(args=list(args))], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stderr.split("\n")[-2].split())


def test_a_worker_command_imports_no_other_commands_modules():
    imported = _modules_imported_by("hj212", "--help")
    assert "click" in imported and "core.settings" in imported
    assert not {name for name in HEAVY if name in imported}, "imported by `ganzhi hj212 --help`"


def test_help_lists_every_command_and_runs_one_from_another_module():
    listing = _ganzhi("--help")
    assert listing.returncode == 0, listing.stderr
    for command in ("up", "ingest", "ledger", "bench", "user", "token", "department", "fire", "firms", "heat-source",
                    "train-fire-verifier"):
        assert f"\n  {command} " in listing.stdout, command
    assert "Accounts: people" in listing.stdout  # a lazily imported group's own help
    users = _ganzhi("user", "--help")
    assert users.returncode == 0 and "add" in users.stdout and "password" in users.stdout
    assert "ingest.worker" not in _modules_imported_by("user", "--help")


def test_the_api_imports_no_camera_pipeline():
    """`up` imports the API on every start; OpenCV and ONNX Runtime (the fire worker's, reached through the FIRMS
    upload) were a fifth of that import's CPU. The upload imports them itself (tests/fire/test_worker_api.py)."""
    done = subprocess.run([sys.executable, "-c", "import sys, api.app; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split())
    assert "fastapi" in imported
    assert not {"cv2", "onnxruntime", "analytics.fire.pipeline"} & imported
