"""The whole API against its own OpenAPI schema (issue 10 §4): schemathesis sends schema-valid and schema-breaking
requests to every operation of the live server; no answer may be a 5xx, and every answer must match what the
schema documents for it (status code, content type, body).

The server is `ganzhi api` in a process of its own, and three threads of the test send: while one waits for an
answer, another generates its next case (with the server in a thread of the test, generating and serving shared
one GIL and took turns). The writes (every method but GET) go one at a time, in a fixed order, in one of the
threads; the reads are shared out."""

from __future__ import annotations

import ast
import os
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from tests.conftest import TLS, _empty_ledger, api_process
from tests.factories import BEILIN

EXAMPLES_PER_OPERATION = 10
"""Per operation and mode (positive, negative)."""
SELF_DEFEATING = {("DELETE", "/api/v1/tokens/{token_id}"), ("POST", "/api/v1/users/{login}/disable")}
"""Left out: a generated id or login may revoke the very credentials the run (and the session's other tests)
uses, after which every answer is 401. Token revocation and disabling are tested in tests/api/test_auth.py."""
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
TIMEOUT_S = 30
STREAM_READ_S = 5
"""GET /api/v1/stream never ends, and schemathesis reads an event stream until 20 events came or its timeout
passed: the fuzz's ledger has no events, so every stream answered took the whole timeout (30 s, two heartbeats;
three minutes of the run's four). A stream's answer is read for five seconds (its head must come within them):
the same status, headers and events are checked; the heartbeat's check of the credentials is
tests/api/test_stream.py's."""
SENDERS = 3
"""Threads sending requests: the streams keep one waiting for most of the run."""
SEED = os.environ.get("GANZHI_FUZZ_SEED")
"""Unset: hypothesis draws every operation's cases from a seed derived from the test's code (the same cases each
run, until that code changes). Set to an integer: from that seed, another draw of about 1,600 cases (to look
further than CI does: ``GANZHI_FUZZ_SEED=7 pytest tests/api/test_schema_fuzz.py``)."""


@dataclass
class Run:
    """What the senders share: the count of cases, the operations of those sent with their credentials broken on
    purpose, the events the streams sent (checked against their schema), the failures, and the operations whose
    credentials were shown to be enforced."""

    cases: list[int] = field(default_factory=list)
    uncredentialed: list[str] = field(default_factory=list)
    stream_events: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    auth_enforced: set[str] = field(default_factory=set)


@pytest.fixture
def api_schema(db_url: str, broker: tuple[str, int], admin_token: str, tmp_path) -> Iterator:
    """The schema of `ganzhi api` in a process of its own, with a terminal, an alert on it (an event of the live
    stream) and a pole in the ledger so that reads find something; the ledger is emptied after.

    Every case carries the platform admin's token as schemathesis' credentials for the bearer scheme, not as a
    header of each request: a case that breaks the credentials on purpose (a negative case of the
    ``Authorization`` header, or of the session cookie) is sent as generated, without the token, and must be
    refused (a header of each request overrode the broken ``Authorization`` with the admin's: those cases were
    accepted, and their checks proved nothing)."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    config = SchemathesisConfig.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": admin_token}}}})
    try:
        with api_process(db_url, broker, tmp_path / "api.log") as url:
            with httpx.Client(verify=TLS, base_url=url, timeout=60, headers=headers) as client:
                terminal = {"name": "中兴大街空气微站", "kind": "air_sensor", "lon": BEILIN[0], "lat": BEILIN[1]}
                created = client.post("/api/v1/terminals", json=terminal)
                assert created.status_code == 201
                _open_alert(db_url, created.json()["code"])
                pole = {"name": "中兴大街01号杆", "department": "cgj", "lon": BEILIN[0], "lat": BEILIN[1]}
                assert client.post("/api/v1/poles", json=pole).status_code == 201
            yield schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    finally:
        _empty_ledger(db_url)


def _open_alert(db_url: str, terminal: str) -> None:
    """An alert on the terminal, as a rule worker opens one: an event of the live stream, which the fuzz's streams
    (resuming after a generated id) then send, and whose schema they check."""
    with psycopg.connect(db_url) as conn:
        conn.execute("""
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select id, 'gb3838:w01009', 'river', 'warning', 'steward', department_code, division_code, now(), 'fuzz'
              from terminal where code = %s
            """, (terminal,))


@pytest.fixture
def one_parse_at_a_time(monkeypatch) -> None:
    """Python 3.11 counts the depth of the AST objects it builds in one counter per interpreter: two threads
    parsing at once fail with "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905).
    Hypothesis parses source as each test starts (the test's key, the constants it seeds generation with), so the
    senders parse one at a time."""
    lock, parse = threading.Lock(), ast.parse

    def parse_alone(*args, **kwargs):
        with lock:
            return parse(*args, **kwargs)

    monkeypatch.setattr(ast, "parse", parse_alone)


def _is_stream(operation) -> bool:
    return "text/event-stream" in operation.definition.raw.get("responses", {}).get("200", {}).get("content", {})


def _fuzz(operation, mode: GenerationMode, session: requests.Session, run: Run) -> None:
    """Hypothesis drives one operation in one mode; deterministic, no shrinking (a failure names its case).

    Every check runs but ``positive_data_acceptance``: a schema-valid request may still break a rule of the ledger
    (a point outside Suihua, a parent division that does not exist), and that is a documented 422, not a fault.
    ``ignored_auth`` on a case with the admin's credentials (the answer without credentials, and with forged ones,
    must be a refusal: two more requests) runs until an operation passed it once, as schemathesis' own runner
    does: credentials are checked per route, not per request. On a case whose credentials are broken on purpose it
    always runs (it sends nothing more: that answer itself must be a refusal)."""
    timeout = (TIMEOUT_S, STREAM_READ_S) if _is_stream(operation) else TIMEOUT_S

    @given(case=_cases(operation, mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        run.cases.append(1)
        credentialed = not operation.schema.is_security_param_negated(case)
        if not credentialed:
            run.uncredentialed.append(operation.label)
        probed = not credentialed or operation.label not in run.auth_enforced
        excluded = [positive_data_acceptance] if probed else [positive_data_acceptance, ignored_auth]
        response = case.call_and_validate(session=session, timeout=timeout, excluded_checks=excluded)
        if _is_stream(operation) and response.status_code == 200:
            run.stream_events.append(response.content.count(b"\ndata: "))
        if credentialed and probed and 200 <= response.status_code < 300 and not _negative_path(case):
            run.auth_enforced.add(operation.label)  # ignored_auth sent its two requests without credentials

    if SEED is not None:
        fuzz = seed(int(SEED))(fuzz)
    try:
        fuzz()
    except Unsatisfiable:
        assert mode is GenerationMode.NEGATIVE  # nothing schema-breaking to send (no parameters, or a bare string)


def _cases(operation, mode: GenerationMode):
    """Schemathesis' cases of the operation in the mode. Of the live stream's schema-valid ones, about half resume
    from the feed's start (``after=0``): a generated id is nearly always past the fuzz's few events, and a stream
    that sends no event checks no event's schema."""
    cases = operation.as_strategy(generation_mode=mode)
    if _is_stream(operation) and mode is GenerationMode.POSITIVE:
        return cases | operation.as_strategy(generation_mode=mode, query={"after": 0})
    return cases


def _negative_path(case) -> bool:
    """A schema-breaking path may miss the operation's route: ``ignored_auth`` then sends nothing."""
    return case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)


def _send(own: list, shared: queue.SimpleQueue, run: Run) -> None:
    """One sender: its own (operation, mode) pairs in order, then pairs from the shared queue until it is empty."""
    with requests.Session() as session:
        for operation, mode in own:
            _fuzz_reporting(operation, mode, session, run)
        while True:
            try:
                operation, mode = shared.get_nowait()
            except queue.Empty:
                return
            _fuzz_reporting(operation, mode, session, run)


def _fuzz_reporting(operation, mode: GenerationMode, session: requests.Session, run: Run) -> None:
    try:
        _fuzz(operation, mode, session, run)
    except (Exception, BaseExceptionGroup) as exc:  # every operation runs; failures reported together
        run.failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {_described(exc)}")


def _described(exc: BaseException) -> str:
    """The failure and, for a group (hypothesis' flaky failures), each exception in it."""
    if isinstance(exc, BaseExceptionGroup):
        return f"{exc}" + "".join(f"\n  - {type(inner).__name__}: {_described(inner)}" for inner in exc.exceptions)
    return str(exc)


@pytest.mark.slow
@pytest.mark.usefixtures("one_parse_at_a_time")
def test_every_operation_answers_as_its_schema_says(api_schema):
    started, run = time.monotonic(), Run()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    pairs = [(operation, mode) for operation in operations
             if (operation.method.upper(), operation.path) not in SELF_DEFEATING for mode in MODES]
    secured = {operation.label for operation, _ in pairs if list(operation.security.iter_parameters())}
    writes = [(operation, mode) for operation, mode in pairs if operation.method.upper() != "GET"]
    reads: queue.SimpleQueue = queue.SimpleQueue()
    for pair in sorted((pair for pair in pairs if pair[0].method.upper() == "GET"), key=lambda p: not _is_stream(p[0])):
        reads.put(pair)  # the streams first: they wait longest
    with ThreadPoolExecutor(SENDERS, thread_name_prefix="fuzz") as senders:
        done = [senders.submit(_send, own, reads, run) for own in [writes, *[[]] * (SENDERS - 1)]]
    for sender in done:
        sender.result()
    print(f"schemathesis: {len(run.cases)} cases of {len(pairs)} operations and modes in "
          f"{time.monotonic() - started:.0f} s (seed {SEED or 'derived from the code'}); {len(run.uncredentialed)} "
          f"with credentials broken on purpose, on {len(set(run.uncredentialed))} of the {len(secured)} operations "
          f"that need credentials (none on: {sorted(secured - set(run.uncredentialed)) or 'none'}); "
          f"{sum(run.stream_events)} stream events in {sum(map(bool, run.stream_events))} of "
          f"{len(run.stream_events)} streams answered")
    assert not run.failures, "\n\n".join(run.failures)
