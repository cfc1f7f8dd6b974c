"""Rule workers against the real store: event time, late and repeated data, flags, concurrency, restart,
no-data, incidents, and the alert lifecycle over HTTP."""

from __future__ import annotations

import datetime as dt
import gc
import time
from urllib.parse import quote

import psycopg

from alerts import service as alerts
from analytics import evaluate, queries
from analytics.engine import Point
from analytics.evaluate import sweep_silence
from analytics.rules import TerminalInfo, rules_for, take_context
from analytics.worker import COLLECTOR, RuleWorker, owner
from core.runtime import Service
from ingest.validate import Accepted
from ingest.writer import Batch, Writer
from registry import service
from registry.changes import Actor
from tests.factories import pole_in, river_station, terminal_in

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write(db_url: str, code: str, metric: str, values: list[tuple[int, float, str | None]]) -> None:
    """Readings at NOW + minutes."""
    with psycopg.connect(db_url) as conn:
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        batch = Batch(readings=[Accepted(terminal_id, code, metric, int((NOW + dt.timedelta(minutes=m)).timestamp()
                                                                         * 1000), v, f) for m, v, f in values])
        Writer().write(conn, batch)


class Worker:
    """A rule worker driven step by step: it listens before the readings are written, and knows the rule workers
    alive (their heartbeats, ``_beat``), as a running one does."""

    def __init__(self, db_url: str, name: str = "rules-test") -> None:
        self.rules = RuleWorker(db_url, alerts, name)
        self.listen = psycopg.connect(db_url, autocommit=True)
        self.rules.listen(self.listen)
        self.conn = psycopg.connect(db_url)
        self.rules.refresh_members(self.conn)

    def step(self) -> int:
        """Take in every notification of what was written before (a running worker takes in what has come by
        then, the rest in its next step), then step until the queue is empty (a step judges one chunk, which the
        chunk budget may make a single terminal); returns the terminals judged."""
        self.rules.drain(self.listen, 0.5, dt.datetime.now(dt.UTC))
        while True:
            queued = len(self.rules.pending)
            self.rules.drain(self.listen, 0.1, dt.datetime.now(dt.UTC))
            if len(self.rules.pending) == queued:
                break
        judged = self.rules.step(self.listen, self.conn, wait_s=0.5)
        while self.rules.pending:
            judged += self.rules.step(self.listen, self.conn, wait_s=0.0)
        return judged

    def close(self) -> None:
        self.listen.close()
        self.conn.close()


def _alerts(db_url: str) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("select rule, status, severity, observed_start, observed_end from alert order by id"
                            ).fetchall()


def _station(conn) -> str:
    code = service.create_terminal(conn, river_station(), Actor("test"))
    conn.commit()
    return code


def test_violation_opens_then_late_data_resolves_and_repeats_change_nothing(conn, db_url):
    code = _station(conn)
    worker = Worker(db_url)
    try:
        _write(db_url, code, "w21003", [(-120, 0.6, None), (-90, 1.4, None), (-60, 1.6, None)])
        worker.step()
        # 1.6 mg/L is class V: two classes worse than the target III
        assert [(r, s, sev) for r, s, sev, _, _ in _alerts(db_url)] == [("gb3838:w21003", "open", "critical")]
        assert _alerts(db_url)[0][3] == NOW - dt.timedelta(minutes=90)  # observation time, not arrival
        _write(db_url, code, "w21003", [(-90, 1.4, None), (-60, 1.6, None)])  # duplicates
        worker.step()
        assert len(_alerts(db_url)) == 1
        _write(db_url, code, "w21003", [(-30, 0.5, None)])  # the condition clears
        worker.step()
        _, status, _, _, end = _alerts(db_url)[0]
        assert (status, end) == ("resolved", NOW - dt.timedelta(minutes=30))
        with psycopg.connect(db_url) as c:
            actions = [a for (a,) in c.execute("select action from alert_event order by id")]
        assert actions == ["open", "resolve"]
    finally:
        worker.close()


def test_out_of_order_and_late_data_retract_an_alert_that_never_lasted(conn, db_url):
    code = _station(conn)
    worker = Worker(db_url)
    try:
        _write(db_url, code, "w21003", [(-60, 1.6, None), (-120, 1.6, None)])  # arrives newest first
        worker.step()
        assert _alerts(db_url)[0][1] == "open"
        _write(db_url, code, "w21003", [(-90, 0.4, None)])  # a late reading between them: never two in a row
        worker.step()
        assert _alerts(db_url)[0][1] == "closed"
        with psycopg.connect(db_url) as c:
            assert c.execute("select comment from alert_event where action = 'retract'").fetchone()[0].startswith(
                "late data")
    finally:
        worker.close()


def test_a_reading_a_moment_late_rewinds_the_rule_and_retracts_the_spike_it_un_makes(conn, db_url, monkeypatch):
    """A reading commits after a newer one of its terminal was judged (two ingest workers' batches out of order):
    the spike rule goes back to its mark before the reading and feeds on, and the spike the late reading shows was
    none (29 then 30 %LEL: a leak starting, not a spike) is retracted as after a window."""
    code = service.create_terminal(conn, terminal_in("甲烷", "methane_detector", report_interval_s=60), Actor("t"))
    conn.commit()
    monkeypatch.setattr(evaluate, "MARK_EVERY_S", 1.0)
    worker = Worker(db_url)
    try:
        _write(db_url, code, "methane_lel", [(-10, 0.0, None)])
        worker.step()
        time.sleep(evaluate.MARK_EVERY_S + 0.1)  # the rule notes a mark at most that often
        _write(db_url, code, "methane_lel", [(-8, 30.0, None), (-7, 0.0, None)])
        worker.step()
        assert [(r, s) for r, s, *_ in _alerts(db_url) if r.startswith("device:")] == [("device:jump:methane_lel",
                                                                                       "open")]
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        spike_rule = worker.rules.memory[terminal_id].rules["device:jump:methane_lel"]
        _write(db_url, code, "methane_lel", [(-9, 29.0, None)])
        worker.step()
        assert worker.rules.metrics.registry.totals()["rules_rewinds"] == 1
        assert worker.rules.memory[terminal_id].rules["device:jump:methane_lel"] is spike_rule  # no window re-read
        assert [(r, s) for r, s, *_ in _alerts(db_url) if r.startswith("device:")] == [("device:jump:methane_lel",
                                                                                       "closed")]
        with psycopg.connect(db_url) as c:
            assert c.execute("select comment from alert_event where action = 'retract'").fetchone()[0].startswith(
                "late data")
    finally:
        worker.close()


def test_flagged_values_raise_nothing(conn, db_url):
    code = _station(conn)
    worker = Worker(db_url)
    _write(db_url, code, "w21003", [(-120, 3.0, "M"), (-90, 3.1, "C"), (-60, 3.0, "D")])
    worker.step()
    worker.close()
    assert _alerts(db_url) == []


def _beat(conn, *names: str) -> None:
    """Rule workers alive, as their heartbeats (core/runtime.py) say."""
    for name in names:
        conn.execute("insert into service_heartbeat (name, kind, host, pid, started_at, beat_at, state) "
                     "values (%s, 'rules', 'test', 1, now(), now(), 'running') on conflict (name) do update "
                     "set beat_at = now()", (name,))
    conn.commit()


def test_workers_share_the_terminals_and_never_double_an_alert(conn, db_url):
    codes = [service.create_terminal(conn, river_station(f"站{i}", at=(126.94 + i * 0.004, 46.53)), Actor("t"))
             for i in range(6)]
    conn.commit()
    _beat(conn, "w1", "w2")
    workers = [Worker(db_url, name) for name in ("w1", "w2")]
    for code in codes:
        _write(db_url, code, "w21003", [(-90, 1.6, None), (-60, 1.7, None)])
    judged = [w.step() for w in workers]
    for w in workers:
        w.close()
    ids = [conn.execute("select id from terminal where code = %s", (c,)).fetchone()[0] for c in codes]
    assert judged == [sum(owner(["w1", "w2"], t) == name for t in ids) for name in ("w1", "w2")]
    assert sorted(r for r, s, *_ in _alerts(db_url) if s == "open") == ["gb3838:w21003"] * 6


def test_a_restarted_worker_resumes_the_episode_it_was_in(conn, db_url):
    code = _station(conn)
    worker = Worker(db_url)
    _write(db_url, code, "w21003", [(-90, 1.6, None)])  # one reading: shorter than the rule's 30 minutes so far
    worker.step()
    worker.close()
    assert _alerts(db_url) == []
    restarted = Worker(db_url)
    try:
        _write(db_url, code, "w21003", [(-60, 1.7, None)])
        restarted.step()
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        held = restarted.rules.memory[terminal_id].rules["gb3838:w21003"]
        assert held.judged_to == NOW - dt.timedelta(minutes=60)
        assert [(r, s, start) for r, s, _, start, _ in _alerts(db_url)] == [
            ("gb3838:w21003", "open", NOW - dt.timedelta(minutes=90))]  # the episode began before the restart
        _write(db_url, code, "w21003", [(-30, 0.3, None)])
        restarted.step()
    finally:
        restarted.close()
    assert [s for _, s, *_ in _alerts(db_url)] == ["resolved"]


def test_the_worker_keeps_the_set_of_terminals_holding_a_jump(conn, db_url):
    """The search for jumps followed by silence looks only at ``RuleWorker.holding``: a terminal joins it when its
    spike screen holds a jump and leaves it when the next reading releases the jump."""
    code = service.create_terminal(conn, terminal_in("甲烷", "methane_detector", report_interval_s=60), Actor("t"))
    calm = service.create_terminal(conn, terminal_in("甲烷2", "methane_detector", report_interval_s=60), Actor("t"))
    conn.commit()
    jumped = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
    worker = Worker(db_url)
    try:
        _write(db_url, code, "methane_lel", [(-3, 0.0, None), (-2, 45.0, None)])
        _write(db_url, calm, "methane_lel", [(-3, 0.0, None), (-2, 0.5, None)])
        worker.step()
        assert len(worker.rules.memory) == 2
        assert worker.rules.holding == {jumped}
        _write(db_url, code, "methane_lel", [(-1, 46.0, None)])  # the jump stays: a leak, judged at its own time
        worker.step()
        assert worker.rules.holding == set()
    finally:
        worker.close()
    assert [(rule, start) for rule, _, _, start, _ in _alerts(db_url)] == [
        ("gas:methane", NOW - dt.timedelta(minutes=2))]


def test_a_worker_added_at_run_time_takes_its_share_and_resumes_from_the_stored_state(conn, db_url):
    codes = [service.create_terminal(conn, river_station(f"站{i}", at=(126.94 + i * 0.004, 46.53)), Actor("t"))
             for i in range(8)]
    conn.commit()
    first = Worker(db_url, "w1")
    _beat(conn, "w1")
    for code in codes:  # episodes begin while w1 is alone
        _write(db_url, code, "w21003", [(-90, 1.6, None)])
    assert first.step() == 8
    _beat(conn, "w1", "w2")
    second = Worker(db_url, "w2")
    first.rules._due["members"] = 0.0  # it looks at the membership again now
    try:
        for code in codes:
            _write(db_url, code, "w21003", [(-60, 1.7, None)])
        moved = second.step()
        kept = first.step()
    finally:
        first.close()
        second.close()
    ids = [conn.execute("select id from terminal where code = %s", (c,)).fetchone()[0] for c in codes]
    # w1 heard the readings before it saw w2: it judges what it queued, w2 its share (judged twice, alerted once)
    assert moved == sum(owner(["w1", "w2"], t) == "w2" for t in ids) and kept == 8 and moved > 0
    starts = {start for r, s, _, start, _ in _alerts(db_url)}
    assert len(_alerts(db_url)) == 8 and starts == {NOW - dt.timedelta(minutes=90)}


def test_no_data_is_a_device_alert_for_the_steward(conn, db_url):
    code = service.create_terminal(conn, terminal_in(), Actor("t"))  # air sensor, every 300 s
    conn.commit()
    _write(db_url, code, "a34004", [(-60, 30.0, None)])
    with psycopg.connect(db_url) as wc:
        sweep_silence(wc, alerts, 0, 1)
        wc.commit()
    rows = _alerts(db_url)
    assert [(r, s) for r, s, *_ in rows] == [("device:nodata:a34004", "open")]
    with psycopg.connect(db_url) as c:
        assert c.execute("select bureau, department_code from alert").fetchone() == ("steward", "sthjj")
    _write(db_url, code, "a34004", [(0, 31.0, None)])
    with psycopg.connect(db_url) as wc:
        sweep_silence(wc, alerts, 0, 1)
        wc.commit()
    assert [s for _, s, *_ in _alerts(db_url)] == ["resolved"]


def test_sensors_on_one_pole_share_an_incident_and_the_lifecycle_over_http(conn, db_url, http):
    pole = service.create_pole(conn, pole_in(), Actor("t"))
    gas = service.create_terminal(conn, terminal_in("甲烷", "methane_detector", at=None, pole=pole), Actor("t"))
    room = service.create_terminal(conn, terminal_in("甲烷2", "methane_detector", at=None, pole=pole), Actor("t"))
    conn.commit()
    worker = Worker(db_url)
    for code in (gas, room):
        # 60 after 30 could be a spike until the next reading shows it stayed (a spike is the steward's matter)
        _write(db_url, code, "methane_lel", [(-5, 30.0, None), (-4, 60.0, None), (-3, 61.0, None)])
    worker.step()
    worker.close()
    incidents = http.get("/api/v1/incidents").json()["data"]
    assert len(incidents) == 1 and incidents[0]["active_alerts"] == 2 and incidents[0]["bureau"] == "housing"
    listed = http.get("/api/v1/alerts", params={"bureau": "housing", "status": "open"}).json()["data"]
    assert {a["terminal"] for a in listed} == {gas, room} and {a["severity"] for a in listed} == {"critical"}
    alert_id = listed[0]["id"]
    detail = http.get(f"/api/v1/alerts/{alert_id}").json()
    assert [r["value"] for r in detail["readings"]] == [30.0, 60.0, 61.0] and detail["metric"] == "methane_lel"
    acked = http.post(f"/api/v1/alerts/{alert_id}/acknowledge", json={"comment": "派人查看"},
                      headers={"X-Actor": quote("住建局值班员")})
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert acked.json()["events"][-1] == {**acked.json()["events"][-1], "actor": "test-admin",
                                          "action": "acknowledge", "comment": "派人查看"}
    again = http.post(f"/api/v1/alerts/{alert_id}/acknowledge")
    assert again.status_code == 409
    for other in http.get("/api/v1/alerts", params={"status": "open"}).json()["data"]:
        http.post(f"/api/v1/alerts/{other['id']}/resolve")
    http.post(f"/api/v1/alerts/{alert_id}/resolve")
    assert http.get("/api/v1/incidents").json()["data"][0]["status"] == "closed"


def test_neighbouring_river_stations_share_an_incident_and_distant_ones_do_not(conn, db_url):
    def station(name: str, km: float, lon: float) -> str:
        item = river_station(name, at=(lon, 46.53))
        item.attrs["chainage_km"] = km
        return service.create_terminal(conn, item, Actor("t"))

    upstream = station("上游站", 150, 126.90)
    next_one = station("下游站", 170, 126.92)
    far = station("远站", 260, 126.94)
    conn.commit()
    worker = Worker(db_url)
    for code in (upstream, next_one, far):
        _write(db_url, code, "w21003", [(-90, 1.6, None), (-60, 1.7, None)])
    worker.step()
    worker.close()
    with psycopg.connect(db_url) as c:
        groups = c.execute("select count(distinct incident_id), count(*) from alert").fetchone()
        titles = {t for (t,) in c.execute("select title from incident")}
    assert groups == (2, 3)
    assert titles == {"呼兰河: stations along the river"}


def test_backtest_lists_what_the_rules_would_have_raised(conn, db_url):
    import os
    import subprocess
    import sys

    code = _station(conn)
    _write(db_url, code, "w21003", [(-90, 1.6, None), (-60, 1.7, None), (-30, 0.3, None)])
    start = (NOW - dt.timedelta(hours=3)).astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M:%S")
    result = subprocess.run([sys.executable, "-m", "ganzhi", "rules", "backtest", "--terminal", code, "--from", start],
                            env=dict(os.environ, DATABASE_URL=db_url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "gb3838:w21003" in result.stdout and "1 alert(s) would have been raised" in result.stdout
    assert _alerts(db_url) == []  # nothing written


def test_a_running_worker_is_woken_by_the_commit_and_a_second_one_joins_at_run_time(conn, db_url):
    import os
    import subprocess
    import sys
    import time

    codes = [service.create_terminal(conn, terminal_in(f"甲烷{i}", "methane_detector"), Actor("t")) for i in range(12)]
    conn.commit()
    env = dict(os.environ, DATABASE_URL=db_url, GANZHI_LOG_LEVEL="WARNING")
    started = []

    def start(name: str) -> None:
        started.append(subprocess.Popen([sys.executable, "-m", "ganzhi", "analytics", "--name", name], env=env))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and conn.execute(
                "select count(*) from service_heartbeat where name = %s", (name,)).fetchone() != (1,):
            conn.commit()
            time.sleep(0.1)
        time.sleep(2.5)  # every worker has looked at the membership again

    def alert_after_write(code: str) -> float:
        _write(db_url, code, "methane_lel", [(0, 60.0, None)])
        written = time.monotonic()
        while time.monotonic() - written < 10:
            conn.commit()
            if conn.execute("select 1 from alert a join terminal t on t.id = a.terminal_id where t.code = %s",
                            (code,)).fetchone():
                return time.monotonic() - written
            time.sleep(0.01)
        raise AssertionError(f"no alert for {code}")

    try:
        start("rules-a")
        assert alert_after_write(codes[0]) < 1.5  # woken by the commit, not by a polling cycle
        start("rules-b")
        assert max(alert_after_write(code) for code in codes[1:]) < 1.5
        workers = {w for (w,) in conn.execute("select distinct worker from rule_cursor")}
        conn.commit()
        assert workers == {"rules-a", "rules-b"}  # the one started at run time took its share
    finally:
        for process in started:
            process.terminate()
            process.wait(30)


def test_a_rule_worker_tunes_the_collector_and_counts_its_time(monkeypatch):
    """A worker's memory is a million long-lived objects: it collects garbage less often (``COLLECTOR``), and says
    what the collections still cost (``rules_gc_seconds``); the count stops with the worker."""
    worker = RuleWorker("postgresql://unused", alerts, "rules-gc")
    monkeypatch.setattr(worker, "_serve", lambda service: gc.collect())
    before = gc.get_threshold()
    try:
        worker.run(Service("rules", "rules-gc", "postgresql://unused"))
        assert gc.get_threshold() == COLLECTOR
    finally:
        gc.set_threshold(*before)
    assert worker.metrics.registry.totals()["rules_gc_seconds"] > 0
    assert worker._collecting not in gc.callbacks


# -- a worker joining at run time takes over terminals with a backlog ------------------------------------------

def _started(db_url: str, name: str) -> Worker:
    """A rule worker as a service starts one (``RuleWorker._serve``): listening, then catching up."""
    worker = Worker(db_url, name)
    worker.rules.begin(worker.conn)
    return worker


def _shared_stations(conn, members: list[str], each: int = 2) -> list[str]:
    """River stations, at least ``each`` of them owned by every member once all of ``members`` run."""
    codes: list[str] = []
    owners: dict[str, int] = dict.fromkeys(members, 0)
    while min(owners.values()) < each:
        assert len(codes) < 40, owners
        code = service.create_terminal(conn, river_station(f"站{len(codes)}", at=(126.94 + len(codes) * 0.004,
                                                                                 46.53)), Actor("t"))
        conn.commit()
        codes.append(code)
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        owners[owner(members, terminal_id)] += 1
    return codes


def _arrived_ago(conn, ago: dt.timedelta) -> None:
    """The readings stored so far arrived ``ago`` earlier than they did (a worker that far behind)."""
    conn.execute("update reading set received_at = received_at - %s", (ago,))
    conn.commit()


def _gone(conn, name: str) -> None:
    """A rule worker stopped: its last heartbeat says so."""
    conn.execute("update service_heartbeat set state = 'stopped' where name = %s", (name,))
    conn.commit()


def _violations(conn) -> dict[str, list[tuple]]:
    """Terminal code → its class alerts (status, observed start), and every alert's actions in order."""
    rows = conn.execute(
        """
        select t.code, a.status, a.observed_start,
               array(select e.action from alert_event e where e.alert_id = a.id order by e.id)
          from alert a join terminal t on t.id = a.terminal_id
         where a.rule = 'gb3838:w21003' order by t.code, a.id
        """).fetchall()
    conn.commit()
    found: dict[str, list[tuple]] = {}
    for code, status, start, actions in rows:
        found.setdefault(code, []).append((status, start, actions))
    return found


def _clear(db_url: str, codes: list[str], *workers: Worker) -> None:
    """Every station's violation clears, and the workers judge it in this order."""
    for code in codes:
        _write(db_url, code, "w21003", [(-30, 0.3, None)])
    for worker in workers:
        worker.step()


def _each_alerted_once(conn, codes: list[str], status: str = "open") -> None:
    actions = ["open"] if status == "open" else ["open", "resolve"]
    assert _violations(conn) == {code: [(status, NOW - dt.timedelta(minutes=90), actions)] for code in codes}


def test_a_worker_joining_takes_over_a_backlog_older_than_an_hour_and_each_violation_alerts_once(conn, db_url):
    """A rule worker back from a three-hour outage catches up on two hours of readings; a second one is started to
    help before it is through. The terminals the newcomer takes over must not leave the backlog behind: the
    newcomer catches up from its own watermark (new by name: the last hour), and the worker that had them moved
    its watermark past them. Every station's violation is alerted once, and resolved once when it clears."""
    codes = _shared_stations(conn, ["rules-a", "rules-j"])
    _two_hours_behind(conn, codes, db_url)
    _beat(conn, "rules-a")
    first = _started(db_url, "rules-a")
    assert len(first.rules.pending) == len(codes)  # the backlog is queued, nothing judged yet
    _beat(conn, "rules-a", "rules-j")
    joiner = _started(db_url, "rules-j")
    try:
        joiner.step()
        first.step()
        joiner.step()
        _each_alerted_once(conn, codes)
        _clear(db_url, codes, first, joiner)
    finally:
        first.close()
        joiner.close()
    _each_alerted_once(conn, codes, "resolved")


def test_two_workers_join_at_once_and_one_leaves_at_once_and_nothing_of_the_backlog_is_lost(conn, db_url):
    """Two workers are started together to help one two hours behind; one of them stops a moment later. Its
    terminals go back (from its watermark: it had judged nothing), the other keeps its own."""
    members = ["rules-a", "rules-j", "rules-k"]
    codes = _shared_stations(conn, members)
    _two_hours_behind(conn, codes, db_url)
    _beat(conn, "rules-a")
    first = _started(db_url, "rules-a")
    _beat(conn, *members)
    joiners = [_started(db_url, name) for name in members[1:]]
    try:
        for worker in (*joiners, first):
            worker.step()
        _gone(conn, "rules-k")
        joiners[1].close()
        first.rules._due["members"] = joiners[0].rules._due["members"] = 0.0  # they look at the membership now
        first.step()
        joiners[0].step()
    finally:
        first.close()
        joiners[0].close()
    _each_alerted_once(conn, codes)


def test_a_paused_worker_s_queue_taken_over_by_a_joiner_is_alerted_once_whoever_judges_it(conn, db_url):
    """A worker paused with the notifications of every station queued; a second one joins and catches up on the
    last hour. The stations it takes over may be judged by both (the one that queued them and the one that owns
    them now): the terminal's lock and version, and the alerts' reconciliation, make that one alert each."""
    codes = _shared_stations(conn, ["rules-a", "rules-j"])
    _beat(conn, "rules-a")
    first = _started(db_url, "rules-a")
    joiner = None
    try:
        for code in codes:
            _write(db_url, code, "w21003", [(-90, 1.6, None), (-60, 1.7, None)])
        deadline = time.monotonic() + 30  # a loaded box hands the notifications over one by one
        while len(first.rules.pending) < len(codes) and time.monotonic() < deadline:
            first.rules.drain(first.listen, 0.5, dt.datetime.now(dt.UTC))
        assert len(first.rules.pending) == len(codes)
        _beat(conn, "rules-a", "rules-j")
        joiner = _started(db_url, "rules-j")
        joiner.step()
        first.step()
        _each_alerted_once(conn, codes)
        _clear(db_url, codes, joiner, first)
    finally:
        first.close()
        if joiner is not None:
            joiner.close()
    _each_alerted_once(conn, codes, "resolved")


def _two_hours_behind(conn, codes: list[str], db_url: str, name: str = "rules-a") -> None:
    """Every station's violation arrived two hours ago, while worker ``name`` was down (for three)."""
    for code in codes:
        _write(db_url, code, "w21003", [(-90, 1.6, None), (-60, 1.7, None)])
    _arrived_ago(conn, dt.timedelta(hours=2))
    queries.save_watermark(conn, name, dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    conn.commit()


def test_a_joiner_slow_to_start_finds_nothing_passed_by_the_watermark_it_catches_up_from(conn, db_url):
    """The newcomer's heartbeat is seen before it catches up (a loaded box takes seconds to connect): the worker
    that had its terminals sees it and saves its watermark first. What it had queued of them it judges itself, so
    that watermark, which the newcomer catches up from, has passed nothing unjudged."""
    codes = _shared_stations(conn, ["rules-a", "rules-j"])
    _two_hours_behind(conn, codes, db_url)
    _beat(conn, "rules-a")
    first = _started(db_url, "rules-a")
    _beat(conn, "rules-a", "rules-j")
    try:
        first.step()
        assert queries.watermark(conn, ["rules-a"]) > dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        conn.commit()
        joiner = _started(db_url, "rules-j")
        joiner.step()
        joiner.close()
    finally:
        first.close()
    _each_alerted_once(conn, codes)


def test_the_worker_that_had_the_terminals_crashes_and_is_back_before_anyone_notices(conn, db_url):
    """The worker two hours behind crashes as a second one joins, and is back within the heartbeat's 15 s: nobody
    saw it leave, and its catch-up queues its own share only. The newcomer caught up from the earliest watermark of
    the live workers, the crashed one's among them: its share of the backlog is its own."""
    codes = _shared_stations(conn, ["rules-a", "rules-j"])
    _two_hours_behind(conn, codes, db_url)
    _beat(conn, "rules-a")
    crashed = _started(db_url, "rules-a")
    _beat(conn, "rules-a", "rules-j")
    joiner = _started(db_url, "rules-j")
    crashed.close()  # before judging anything
    again = _started(db_url, "rules-a")
    try:
        assert len(again.rules.pending) < len(codes)  # its own share
        again.step()
        joiner.step()
    finally:
        again.close()
        joiner.close()
    _each_alerted_once(conn, codes)



def _outlet(conn) -> str:
    """A grade 1A sewage outlet's analysers (ammonia's limit 5 mg/L, 8 mg/L with the water at or below 12 °C),
    with two hours and a half of clean water behind it (ammonia 1 mg/L) at ``water`` °C."""
    attrs = {"grade": "1A", "build_year": 2012, "plant": "绥化市第一污水处理厂"}
    outlet = terminal_in("绥化市第一污水处理厂总排口", "sewage_outlet_analyser", (126.99, 46.63), report_interval_s=600,
                         attrs=attrs)
    code = service.create_terminal(conn, outlet, Actor("test"))
    conn.commit()
    return code


def _clean_water(db_url: str, code: str, water: float) -> None:
    _write(db_url, code, "w01010", [(m, water, None) for m in range(-210, -60, 10)])
    _write(db_url, code, "w21003", [(m, 1.0, None) for m in range(-210, -60, 10)])


def test_a_sewage_outlet_s_rule_is_streamed_with_its_water_temperature_not_re_read_each_batch(conn, db_url):
    """Ammonia's limit hangs on the water's temperature (a context series): the rule takes the temperatures as
    they arrive and is streamed: a batch feeds it its readings, it does not re-read its hours each time."""
    code = _outlet(conn)
    worker = Worker(db_url)
    try:
        _clean_water(db_url, code, 10.0)
        worker.step()
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        streamed = worker.rules.memory[terminal_id].rules["gb18918:w21003"]
        _write(db_url, code, "w01010", [(-60, 10.0, None), (-50, 10.0, None)])
        _write(db_url, code, "w21003", [(-60, 6.5, None), (-50, 6.6, None)])  # a step, over 5 but under the cold 8
        worker.step()
        # fed on, not rebuilt over its window (a re-read makes a fresh stream), and rewindable to take in late data
        assert worker.rules.memory[terminal_id].rules["gb18918:w21003"] is streamed and streamed.marks
        assert _alerts(db_url) == []
        _write(db_url, code, "w01010", [(-40, 14.0, None), (-30, 14.0, None)])  # the water warms: the limit is 5
        _write(db_url, code, "w21003", [(-40, 6.4, None), (-30, 6.3, None)])
        worker.step()
        assert [(r, s, start) for r, s, _, start, _ in _alerts(db_url)] == [
            ("gb18918:w21003", "open", NOW - dt.timedelta(minutes=40))]
    finally:
        worker.close()


def test_a_late_water_temperature_rewinds_the_ammonia_rule_and_retracts_what_it_un_makes(conn, db_url):
    code = _outlet(conn)
    worker = Worker(db_url)
    try:
        _clean_water(db_url, code, 14.0)
        worker.step()
        _write(db_url, code, "w21003", [(-60, 6.0, None), (-50, 6.2, None), (-40, 6.1, None)])  # no temperature yet
        worker.step()
        assert [s for r, s, *_ in _alerts(db_url) if r == "gb18918:w21003"] == ["open"]  # warm water, as last read
        _write(db_url, code, "w01010", [(-60, 10.0, None), (-50, 10.0, None), (-40, 10.0, None)])  # late: cold
        worker.step()
        assert [s for r, s, *_ in _alerts(db_url) if r == "gb18918:w21003"] == ["closed"]  # retracted
    finally:
        worker.close()


def test_a_restarted_worker_replays_the_water_temperature_beside_the_ammonia_readings(conn, db_url):
    code = _outlet(conn)
    worker = Worker(db_url)
    _clean_water(db_url, code, 10.0)
    _write(db_url, code, "w01010", [(-60, 10.0, None), (-50, 10.0, None)])
    _write(db_url, code, "w21003", [(-60, 6.5, None), (-50, 6.6, None)])  # under the cold limit
    worker.step()
    worker.close()
    restarted = Worker(db_url)
    try:
        _write(db_url, code, "w21003", [(-40, 6.4, None), (-30, 6.5, None)])  # the water still 10 °C, as last read
        restarted.step()
        terminal_id = conn.execute("select id from terminal where code = %s", (code,)).fetchone()[0]
        assert restarted.rules.memory[terminal_id].rules["gb18918:w21003"].judged_to == NOW - dt.timedelta(minutes=30)
        assert _alerts(db_url) == []
    finally:
        restarted.close()


def test_only_ammonia_s_judges_keep_water_temperatures_and_only_the_last_before_the_reading_judged():
    """Only ammonia's limit hangs on the water's temperature: the other discharge rules do not read it, and ammonia's
    streamed judge keeps the temperatures from the last one at or before the reading it judged (each mark copies
    them: review of session 16, COD, TN and TP kept every temperature ever taken)."""
    outlet = TerminalInfo(1, "23120232000001R", "sewage_outlet_analyser", "sthjj", "231202", None, 126.9,
                          46.5, 600, ("w01010", "w01018", "w21003", "w21011", "w21001"),
                          {"grade": "1A", "build_year": 2012})
    rules = {rule.key: rule for rule in rules_for(outlet)}
    assert [key for key, rule in rules.items() if rule.context and key.startswith("gb18918:")] == [
        "gb18918:w21003", "gb18918:w21003:avg:day"]
    assert all(rule.streamable for key, rule in rules.items() if key.startswith("gb18918:"))
    judge = rules["gb18918:w21003"].make_judge({})
    for i in range(500):  # 3.5 days of a 10-minute outlet
        at = NOW + dt.timedelta(minutes=10 * i)
        take_context(judge, {"w01010": [Point(at, 14.0), Point(at + dt.timedelta(minutes=5), 14.0)]})
        judge(Point(at, 1.0))
    assert len(judge.snapshot()[0][0]) == 2  # the wrapper's snapshot holds the inner judge's: (water,)


def test_late_temperatures_after_a_mark_inside_a_long_feed_are_judged_against_the_right_one(conn, db_url):
    """A feed of more than 6 s notes marks inside it (``MARK_TAILS``), each with every temperature of the batch, newer
    ones included: going back to one, the temperatures after it are handed to the judge again with the late ones,
    which must land in time order (review of session 16: appended, the bisection found the wrong temperature, and the
    -40 reading, cold from -45 on, stayed over the warm limit)."""
    code = _outlet(conn)
    worker = Worker(db_url)
    try:
        _clean_water(db_url, code, 14.0)
        worker.step()
        _write(db_url, code, "w21003", [(-60, 6.0, None), (-50, 6.1, None), (-40, 6.2, None)])
        _write(db_url, code, "w01010", [(-60, 14.0, None), (-30, 14.0, None), (-20, 14.0, None)])
        worker.step()
        assert [s for r, s, *_ in _alerts(db_url) if r == "gb18918:w21003"] == ["open"]
        _write(db_url, code, "w01010", [(-45, 10.0, None), (-35, 14.0, None), (-25, 14.0, None)])  # late: cold at -45
        worker.step()
        ends = [end for r, _, _, _, end in _alerts(db_url) if r == "gb18918:w21003"]
        assert ends == [NOW - dt.timedelta(minutes=40)]  # 6.2 in water at 10 °C is under the cold limit of 8
    finally:
        worker.close()
