"""What validating a ledger write needs to know, loaded once per unit of work:
departments by code and name, kinds, metrics, divisions and their boundaries."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from devices import KINDS, METRICS, TerminalKind
from registry import queries
from registry.errors import Invalid

if TYPE_CHECKING:
    from registry.geo import DivisionIndex

_INDEX_TTL_S = 60.0
_index_lock = threading.Lock()
_index_cache: tuple[float, DivisionIndex] | None = None


def division_index(conn: psycopg.Connection) -> DivisionIndex:
    """The process-wide boundary index, rebuilt after a minute or when ``forget_divisions`` is called (numpy and
    shapely imported here, on first use: the commands that import this module for the ledger's names need neither)."""
    from registry.geo import DivisionIndex

    global _index_cache
    with _index_lock:
        if _index_cache is None or time.monotonic() - _index_cache[0] > _INDEX_TTL_S:
            _index_cache = (time.monotonic(), DivisionIndex.from_rows(queries.division_boundaries(conn)))
        return _index_cache[1]


def forget_divisions() -> None:
    global _index_cache
    with _index_lock:
        _index_cache = None


@dataclass
class Lookups:
    departments: dict[str, str]
    """Code, full name and short name (without 绥化市) → department code."""
    disabled: frozenset[str]
    """Codes of the departments that take nothing new (``department`` refuses them)."""
    divisions: dict[str, str]
    """Division code → level."""
    index: DivisionIndex

    @classmethod
    def load(cls, conn: psycopg.Connection) -> Lookups:
        departments: dict[str, str] = {}
        listed = queries.list_departments(conn)
        for dept in listed:
            for name in (dept.code, dept.name, dept.name.removeprefix("绥化市"), dept.name_en, *dept.aliases):
                departments[name] = dept.code
                departments[name.lower()] = dept.code
        disabled = frozenset(d.code for d in listed if d.disabled_at is not None)
        divisions = {d.code: d.level for d in queries.list_divisions(conn)}
        return cls(departments, disabled, divisions, division_index(conn))

    def department(self, value: str) -> str:
        """The code of the department an object, account or grant is written to; a disabled one is refused."""
        code = self.departments.get(value.strip()) or self.departments.get(value.strip().lower())
        if code is None:
            raise Invalid(f"department {value!r} is unknown", field="department")
        if code in self.disabled:
            raise Invalid(f"department {value!r} is disabled: it takes nothing new", field="department")
        return code

    @property
    def counties(self) -> frozenset[str]:
        return frozenset(code for code, level in self.divisions.items() if len(code) == 6 and level != "city")


KINDS_BY_NAME: dict[str, TerminalKind] = {}
for _kind in KINDS:
    for _name in (_kind.key, _kind.name, _kind.name_zh, _kind.class_code):
        KINDS_BY_NAME[_name] = _kind
        KINDS_BY_NAME[_name.lower()] = _kind

METRIC_KEYS = frozenset(m.key for m in METRICS)


def terminal_kind(value: str) -> TerminalKind:
    """A kind by key, English or Chinese name, or class code."""
    found = KINDS_BY_NAME.get(value.strip()) or KINDS_BY_NAME.get(value.strip().lower())
    if found is None:
        raise Invalid(f"terminal kind {value!r} is unknown; known: {', '.join(k.key for k in KINDS)}", field="kind")
    return found
