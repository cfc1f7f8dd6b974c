"""The TimescaleDB-only SQL cannot run here (no extension), so it is parsed with PostgreSQL's own parser
(pglast) and held to the one definition of the reading table: every column it names exists there, the
reading table is defined nowhere else, and the continuous aggregates have the plain rollups' columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pglast
from pglast import ast

from ganzhi.database import MIGRATION_DIRS
from ingest import timescale

ROLLUP_COLUMNS = ["terminal_id", "metric", "bucket", "readings", "value_sum", "value_min", "value_max",
                  "first_ts", "last_ts"]


def _statements(text: str) -> Iterator[ast.Node]:
    """Top-level statements, and the SQL statements inside DO blocks (parsed as PL/pgSQL)."""
    for raw in pglast.parse_sql(text):
        if isinstance(raw.stmt, ast.DoStmt):
            body = raw.stmt.args[0].arg.sval
            function = f"create function _check() returns void language plpgsql as $body${body}$body$"
            for query in _queries(pglast.parse_plpgsql(function)):
                yield from (r.stmt for r in pglast.parse_sql(query))
        else:
            yield raw.stmt


def _queries(tree: object) -> Iterator[str]:
    if isinstance(tree, dict):
        if "PLpgSQL_stmt_execsql" in tree:
            yield tree["PLpgSQL_stmt_execsql"]["sqlstmt"]["PLpgSQL_expr"]["query"]
        for value in tree.values():
            yield from _queries(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _queries(value)


def _nodes(node: object, kind: type) -> Iterator:
    """Every node of ``kind`` under ``node`` (pglast nodes, tuples of them)."""
    if isinstance(node, kind):
        yield node
    if isinstance(node, ast.Node):
        for name in node:
            yield from _nodes(getattr(node, name), kind)
    elif isinstance(node, tuple | list):
        for item in node:
            yield from _nodes(item, kind)


def _reads_reading(node: ast.Node) -> bool:
    return any(r.relname == "reading" for r in _nodes(node, ast.RangeVar))


def _migrations_text() -> list[tuple[Path, str]]:
    return [(path, path.read_text(encoding="utf-8")) for d in MIGRATION_DIRS for path in sorted(d.glob("*.sql"))]


def reading_columns() -> set[str]:
    """The reading table's columns by its one definition (and any later ALTER TABLE ... ADD COLUMN)."""
    columns: set[str] = set()
    definitions = []
    for path, text in _migrations_text():
        for stmt in _statements(text):
            if isinstance(stmt, ast.CreateStmt) and stmt.relation.relname == "reading":
                definitions.append(path.name)
                columns |= {e.colname for e in stmt.tableElts if isinstance(e, ast.ColumnDef)}
            if isinstance(stmt, ast.AlterTableStmt) and stmt.relation.relname == "reading":
                columns |= {c.def_.colname for c in stmt.cmds if isinstance(c.def_, ast.ColumnDef)}
    assert definitions == ["0002_readings.sql"], f"the reading table must have one definition, not {definitions}"
    return columns


def timescale_references() -> dict[str, set[str]]:
    """What the Timescale SQL names of the reading table: columns, by where they are named."""
    found: dict[str, set[str]] = {"select": set(), "hypertable": set(), "compression": set()}
    for stmt in _statements(timescale.SQL_FILE.read_text(encoding="utf-8")):
        assert not (isinstance(stmt, ast.CreateStmt) and stmt.relation.relname == "reading" and stmt.tableElts
                    and any(isinstance(e, ast.ColumnDef) for e in stmt.tableElts)), "timescale.sql defines columns"
        for select in _nodes(stmt, ast.SelectStmt):
            if select.fromClause and _reads_reading(select):
                outputs = {t.name for t in select.targetList or () if t.name}
                for ref in _nodes(select, ast.ColumnRef):
                    name = ref.fields[-1]
                    if isinstance(name, ast.String) and name.sval not in outputs:
                        found["select"].add(name.sval)
        for call in _nodes(stmt, ast.FuncCall):
            if call.funcname[-1].sval == "create_hypertable":
                table, column = (a.val.sval for a in call.args[:2])
                assert table == "reading"
                found["hypertable"].add(column)
        if isinstance(stmt, ast.AlterTableStmt) and stmt.relation.relname == "reading":
            for option in _nodes(stmt, ast.DefElem):
                if option.defname in ("compress_segmentby", "compress_orderby"):
                    for part in option.arg.sval.split(","):
                        found["compression"].add(part.split()[0])
    return found


def test_the_timescale_sql_names_only_columns_of_the_one_reading_definition():
    columns = reading_columns()
    assert {"terminal_id", "metric", "ts", "value", "flag", "received_at"} <= columns
    references = timescale_references()
    assert references["hypertable"] == {"ts"}
    assert references["compression"] == {"terminal_id", "metric", "ts"}
    assert {"terminal_id", "metric", "ts", "value"} <= references["select"]
    for where, names in references.items():
        assert names <= columns, f"{where} names columns the reading table does not have: {names - columns}"


def test_the_continuous_aggregates_have_the_plain_rollups_columns():
    """The API reads reading_hourly / reading_daily the same way on both paths."""
    aggregates = {}
    for stmt in _statements(timescale.SQL_FILE.read_text(encoding="utf-8")):
        if isinstance(stmt, ast.CreateTableAsStmt):
            aggregates[stmt.into.rel.relname] = [t.name or t.val.fields[-1].sval for t in stmt.query.targetList]
    assert set(aggregates) == {"reading_hourly", "reading_daily"}
    plain = {}
    for _, text in _migrations_text():
        for stmt in _statements(text):
            if isinstance(stmt, ast.CreateStmt) and stmt.relation.relname == "reading_hourly":
                plain = [e.colname for e in stmt.tableElts if isinstance(e, ast.ColumnDef)]
    assert plain == ROLLUP_COLUMNS
    for name, columns in aggregates.items():
        assert sorted(columns) == sorted(plain), name


def test_a_column_the_definition_lacks_is_caught(monkeypatch, tmp_path):
    """The check is not vacuous: a compression setting naming a missing column fails it."""
    broken = tmp_path / "timescale.sql"
    broken.write_text(timescale.SQL_FILE.read_text(encoding="utf-8").replace(
        "compress_segmentby = 'terminal_id, metric'", "compress_segmentby = 'terminal_id, sensor'"))
    monkeypatch.setattr(timescale, "SQL_FILE", broken)
    references = timescale_references()
    assert references["compression"] - reading_columns() == {"sensor"}


def test_the_operators_manual_check_parses_and_names_only_existing_columns():
    """deploy/timescale-check.sql (run by hand on a real server) is valid PostgreSQL, and the readings
    columns it names exist."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "timescale-check.sql"
    sql_only = "\n".join(line for line in script.read_text(encoding="utf-8").splitlines()
                         if not line.startswith("\\"))
    named = set()
    for stmt in _statements(sql_only):
        if isinstance(stmt, ast.InsertStmt) and stmt.relation.relname == "reading":
            named |= {c.name for c in stmt.cols}
        for select in _nodes(stmt, ast.SelectStmt):
            if select.fromClause and _reads_reading(select):
                named |= {r.fields[-1].sval for r in _nodes(select, ast.ColumnRef)
                          if isinstance(r.fields[-1], ast.String)}
    assert {"terminal_id", "metric", "ts", "value"} <= named
    assert named - {"bucket", "readings", "value_sum", "value_min", "value_max"} <= reading_columns()


def test_plain_postgresql_never_sees_the_timescale_sql(fresh_database):
    """Without the extension (as here), maintenance keeps partitions and the reading table stays partitioned."""
    import psycopg

    from core.migrate import migrate
    from ingest import store

    url = fresh_database()
    with psycopg.connect(url) as conn:
        migrate(conn, MIGRATION_DIRS)
        assert not timescale.enable(conn)
        assert store.maintain(conn, retention_days=400, premake_days=1).mode == "partitions"
        assert conn.execute("select count(*) from pg_partitioned_table "
                            "where partrelid = 'reading'::regclass").fetchone() == (1,)


def test_timescale_refuses_a_retention_inside_the_aggregates_refresh_window():
    import pytest

    with pytest.raises(timescale.RetentionTooShort, match="GANZHI_RETENTION_DAYS is 30"):
        timescale.apply(None, retention_days=30)  # refused before touching the database
