"""A TCP proxy on 127.0.0.1 in front of the test PostgreSQL server, that a test cuts and restores.

`cut()` aborts every proxied connection (the client sees its socket reset, as when the server restarts
or the network drops) and refuses new ones by closing them at once; `restore()` lets connections through
again. `lose_next_commit_answer()` forwards the next COMMIT to the server but resets the connection
before its answer reaches the client: the commit happened, the client cannot know. The store talks to
the proxy's URL (`proxied_url`), the test inspects the database directly.
"""

from __future__ import annotations

import asyncio
import contextlib

from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = ["PgProxy"]


class PgProxy:
    """Forwards 127.0.0.1:<port> to the server of `url` until cut."""

    def __init__(self, url: str) -> None:
        parts = conninfo_to_dict(url)
        self.url = url
        self.upstream_host = str(parts.get("host") or "127.0.0.1")
        self.upstream_port = int(parts.get("port") or 5432)
        self.port = 0
        self.cut_now = False
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._trap: asyncio.Event | None = None
        self.commits_lost = 0

    @property
    def proxied_url(self) -> str:
        """`url` pointed at the proxy."""
        return make_conninfo(self.url, host="127.0.0.1", port=str(self.port))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        self.cut_now = True
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()

    def restore(self) -> None:
        self.cut_now = False

    def lose_next_commit_answer(self) -> asyncio.Event:
        """Arm the trap; the event is set once a COMMIT went through and its answer was lost."""
        self._trap = asyncio.Event()
        return self._trap

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_now:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)
        muted = asyncio.Event()
        pipes = [
            asyncio.create_task(self._to_server(reader, up_writer, muted, link)),
            asyncio.create_task(_pipe(up_reader, writer, muted)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._tasks.difference_update(pipes)
            self._links.discard(link)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _to_server(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        muted: asyncio.Event,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                trap = self._trap
                if trap is not None and not trap.is_set() and b"COMMIT" in data:
                    # The client's answer is dropped from now on; the server gets the COMMIT.
                    muted.set()
                    sink.write(data)
                    await sink.drain()
                    await asyncio.sleep(0.3)
                    self.commits_lost += 1
                    client, upstream = link
                    client.transport.abort()
                    upstream.transport.abort()
                    trap.set()
                    return
                sink.write(data)
                await sink.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, muted: asyncio.Event) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            if muted.is_set():
                continue
            sink.write(data)
            await sink.drain()
