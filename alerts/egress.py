"""The delivery worker's HTTP client: every connection goes to an address that was checked when it was opened.

Checking a webhook's host and then letting the HTTP client resolve the name again leaves a window: a DNS server
the endpoint's owner runs can answer a public address to the check and 127.0.0.1 (TTL 0) to the connect (DNS
rebinding). Here the name is resolved once per connection, every address of the answer is checked
(``webhooks.refuse_inward``), and the socket is opened to a checked address. The request is unchanged: its Host
header is the URL's, and over TLS httpcore sends the name as SNI and verifies the certificate against it.
Proxies from the environment are not used (``trust_env=False``): a proxy would resolve the name itself.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import httpx

from alerts import webhooks

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, as the system resolver answers (each once, in its order)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise webhooks.TargetRefused(f"the host {host} does not resolve ({exc})") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked addresses (hosts in ``allow_hosts`` as they are)."""

    def __init__(self, allow_hosts: Iterable[str], resolver: Resolver = resolve) -> None:
        self._allow = frozenset(allow_hosts)
        self._resolve = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 (httpcore's)
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        if host in self._allow:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            addresses = await asyncio.wait_for(self._resolve(host, port), timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} took longer than {timeout} s") from exc
        webhooks.refuse_inward(host, addresses)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:  # the next address, as a resolver's
                failure = exc  # caller would
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise webhooks.TargetRefused("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport on a connection pool that uses :class:`CheckedBackend`."""

    def __init__(self, allow_hosts: Iterable[str], limits: httpx.Limits, resolver: Resolver = resolve) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx has no parameter for httpcore's network backend: its pool is made again, with the same settings.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedBackend(allow_hosts, resolver))


def client(allow_hosts: Iterable[str], timeout_s: float, resolver: Resolver = resolve) -> httpx.AsyncClient:
    """The HTTP client webhooks are sent with: checked connections, no redirects, no proxies from the environment."""
    transport = CheckedTransport(allow_hosts, httpx.Limits(max_connections=200), resolver)
    return httpx.AsyncClient(transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False)
