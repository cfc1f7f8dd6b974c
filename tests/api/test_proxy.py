"""Behind the reverse proxy (docs/deploy.md): X-Forwarded-Proto and X-Forwarded-For are believed from the
proxies GANZHI_FORWARDED_ALLOW_IPS names, and from no one else. Behind Docker's port publishing the proxy
reaches the API from the network's gateway, not 127.0.0.1: untrusted, every session cookie lost its Secure flag
and every login came from one place (one failed-login limit for the whole city)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import uvicorn
from click.testing import CliRunner

from core.settings import Settings
from ganzhi import cli
from ganzhi.benchkit import free_port
from registry import accounts
from registry.changes import Actor
from tests.conftest import serving_api

THROUGH_THE_PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


def _serve(db_url: str, trusted: str) -> Iterator[str]:
    settings = Settings(database_url=db_url, forwarded_allow_ips=trusted, http_port=free_port())
    with serving_api(settings, db_url, forwarded_allow_ips=settings.forwarded_allow_ips) as url:
        yield url


@pytest.fixture(scope="module")
def behind_trusted_proxy(db_url: str) -> Iterator[str]:
    """The API believing the proxy it is reached from (127.0.0.1 here), among others."""
    yield from _serve(db_url, "192.0.2.1, 127.0.0.1")


@pytest.fixture(scope="module")
def behind_untrusted_proxy(db_url: str) -> Iterator[str]:
    """The API believing only a proxy at another address."""
    yield from _serve(db_url, "192.0.2.0/24")


def _log_in(api: str, db_url: str) -> tuple[httpx.Response, str | None]:
    """A login with the proxy's headers: the response and the client the audit log keeps for it."""
    login, password = f"proxy-{uuid.uuid4().hex[:8]}", accounts.new_password()
    with psycopg.connect(db_url) as c:
        accounts.add_account(c, login=login, name="王芳", department="sthjj", roles=["viewer"], kind="person",
                             password=password, actor=Actor("tests"))
    response = httpx.post(f"{api}/api/v1/auth/login", json={"login": login, "password": password},
                          headers=THROUGH_THE_PROXY, timeout=30)
    with psycopg.connect(db_url) as c:
        row = c.execute("select client from change where action = 'login' and object_code = %(login)s",
                        {"login": login}).fetchone()
    return response, row[0] if row else None


def test_a_login_through_a_trusted_proxy_gets_a_secure_cookie_and_the_forwarded_client(behind_trusted_proxy,
                                                                                        db_url):
    response, client = _log_in(behind_trusted_proxy, db_url)
    assert response.status_code == 200, response.text
    assert "; secure" in response.headers["set-cookie"].lower()
    assert client == "203.0.113.7"


def test_an_untrusted_address_cannot_forge_the_scheme_or_the_client(behind_untrusted_proxy, db_url):
    response, client = _log_in(behind_untrusted_proxy, db_url)
    assert response.status_code == 200, response.text
    assert "secure" not in response.headers["set-cookie"].lower()
    assert client == "127.0.0.1"


def test_ganzhi_api_serves_with_the_trusted_proxies_setting(monkeypatch):
    served: dict = {}
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(database_url="postgresql://x@127.0.0.1:1/x",
                                                              forwarded_allow_ips="172.30.80.1"))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    result = CliRunner().invoke(cli.main, ["api"])
    assert result.exit_code == 0, result.output
    assert served["forwarded_allow_ips"] == "172.30.80.1"
