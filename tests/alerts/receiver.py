"""A real HTTP webhook receiver for the delivery tests: records what arrives, checks signatures, can misbehave."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

from alerts.delivery import sign


@dataclass
class Receiver:
    """``fail_rate``: share of requests answered 500; ``delay``: seconds before answering; ``dead``: always 503."""

    secret: str = ""
    fail_rate: float = 0.0
    delay: float = 0.0
    dead: bool = False
    received: list[dict] = field(default_factory=list)
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                if receiver.dead or random.random() < receiver.fail_rate:
                    self.send_response(503 if receiver.dead else 500)
                    self.end_headers()
                    return
                good = sign(receiver.secret, self.headers["X-Ganzhi-Timestamp"], body) == \
                    self.headers["X-Ganzhi-Signature"]
                with receiver.lock:
                    receiver.bad_signatures += not good
                    receiver.received.append({**json.loads(body), "key": self.headers["Idempotency-Key"],
                                              "got_at": time.time()})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> set[int]:
        with self.lock:
            return {event["id"] for event in self.received}

    def first_receipts_per_alert(self) -> dict[int, list[int]]:
        """Per alert, the event ids in the order they first arrived (a redelivered copy is dropped by its key)."""
        seen: set[str] = set()
        order: dict[int, list[int]] = {}
        with self.lock:
            for event in self.received:
                if event["key"] not in seen:
                    seen.add(event["key"])
                    order.setdefault(event["alert_id"], []).append(event["id"])
        return order


def worker_environment(db_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": db_url, "GANZHI_WEBHOOK_ALLOW_HOSTS": '["127.0.0.1"]',
            "GANZHI_WEBHOOK_RETRY_BASE_S": "0.2", "GANZHI_WEBHOOK_RETRY_CAP_S": "1", "GANZHI_WEBHOOK_TIMEOUT_S": "2",
            "GANZHI_LOG_LEVEL": "WARNING", **extra}


def start_worker(db_url: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ganzhi", "deliver"], env=worker_environment(db_url, **extra),
                            stdout=subprocess.DEVNULL)  # its log goes to the test output


def reset_delivery(db_url: str) -> None:
    """No endpoints, no deliveries, and the fan-out reading the feed from now on."""
    with psycopg.connect(db_url, autocommit=True) as c:
        c.execute("truncate webhook, webhook_delivery, sms_outbox")
        c.execute("update webhook_cursor set feed_id = (select coalesce(max(id), 0) from alert_feed)")
