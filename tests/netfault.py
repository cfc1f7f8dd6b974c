"""A TCP proxy whose flows can go silent: bytes stop moving both ways and nothing is closed, as when a firewall
or NAT between a service and its database forgets the flow (no FIN, no RST: only silence)."""

from __future__ import annotations

import asyncio
import threading


class SilencingProxy:
    """``with SilencingProxy(port) as proxy:`` connect to ``proxy.port``; ``proxy.silence()`` freezes every flow
    open at that moment (later ones pass)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._flows: list[asyncio.Event] = []
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> SilencingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._flow, "127.0.0.1", 0), self._loop).result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        async def close() -> None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            for moving in self._flows:  # the pumps see their peers gone and end
                moving.set()
            ours = asyncio.current_task()
            await asyncio.gather(*(t for t in asyncio.all_tasks() if t is not ours), return_exceptions=True)
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def silence(self) -> int:
        """Freeze the flows open now; how many."""
        async def freeze() -> int:
            for moving in self._flows:
                moving.clear()
            return len(self._flows)
        return asyncio.run_coroutine_threadsafe(freeze(), self._loop).result(5)

    async def _flow(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        self._writers += [client_writer, server_writer]
        moving = asyncio.Event()
        moving.set()
        self._flows.append(moving)
        await asyncio.gather(self._pump(client_reader, server_writer, moving),
                             self._pump(server_reader, client_writer, moving), return_exceptions=True)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, moving: asyncio.Event) -> None:
        try:
            while data := await reader.read(65536):
                await moving.wait()  # a silenced flow swallows what comes, forever
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
