"""`ganzhi bench dashboard`: the dashboard's page load on the demo ledger (4,100 terminals), in headless chromium.

A scratch database gets the demo ledger and a few hundred active alerts; the API is served on a free port; an
operator logs in through the page, then the page is loaded again several times. The figure is the time from the
navigation's start until the page says it is ready (map points drawn, alert list and counts filled), as the page
measures it (``performance.now()`` at ``data-ready``), and the wall time seen by the driver.
"""

from __future__ import annotations

import statistics
import threading
import time

import psycopg
import uvicorn

from api.app import create_app
from core.settings import Settings
from ganzhi.benchkit import drop_database, free_port, scratch_database
from ganzhi.browser import chromium_path, launch
from ganzhi.database import prepare
from registry import accounts, demo
from registry.changes import Actor

ALERTS = 300


def _seed(url: str, password: str) -> int:
    with psycopg.connect(url) as conn:
        demo.load(conn)
        accounts.add_account(conn, login="bench-operator", name="压测值班员", department=None,
                             roles=["platform_admin"], kind="person", password=password, actor=Actor("bench"))
        conn.execute(
            """
            insert into alert (terminal_id, rule, family, severity, bureau, department_code, division_code,
                               observed_start, detail)
            select t.id, 'bench:' || t.code, 'device', 'warning', 'steward', t.department_code, t.division_code,
                   now() - interval '10 minutes', '压测告警'
              from terminal t order by random() limit %s
            """, (ALERTS,))
        return conn.execute("select count(*) from terminal").fetchone()[0]


def _serve(url: str, settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, url), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def run(url: str, settings: Settings, loads: int) -> None:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    scratch = scratch_database(url)
    try:
        prepare(scratch, settings)
        password = accounts.new_password()
        terminals = _seed(scratch, password)
        server, thread, base = _serve(scratch, settings)
        try:
            with sync_playwright() as p:
                browser = launch(p, path)
                page = browser.new_page(viewport={"width": 1600, "height": 900})
                page.goto(f"{base}/dashboard/")
                page.fill("input[name=login]", "bench-operator")
                page.fill("input[name=password]", password)
                started = time.perf_counter()
                page.click("#login-form button")
                page.wait_for_selector("body[data-ready]", state="attached", timeout=60_000)
                print(f"first view after login: {1000 * (time.perf_counter() - started):.0f} ms wall")
                page_ms, wall_ms = [], []
                for _ in range(loads):
                    started = time.perf_counter()
                    page.reload()
                    page.wait_for_selector("body[data-ready]", state="attached", timeout=60_000)
                    wall_ms.append(1000 * (time.perf_counter() - started))
                    page_ms.append(float(page.get_attribute("body", "data-ready")))
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        drop_database(url, scratch)
    print(f"dashboard page load, {terminals} terminals, {ALERTS} active alerts, {loads} loads: "
          f"median {statistics.median(page_ms):.0f} ms (page: navigation start → ready), "
          f"max {max(page_ms):.0f} ms; wall median {statistics.median(wall_ms):.0f} ms")
