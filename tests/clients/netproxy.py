"""A TCP proxy that can take "the network" away and give it back, for measuring how soon a
client reconnects after the network returns (issue 25, item 11).

``down()`` closes the listening socket and every piped connection (a client's next dial is
refused at once, as with a lost route); ``up()`` listens again on the same port. The handshake's
``Host`` header is rewritten to the target's: the local gateway refuses any other host (its
DNS-rebinding guard).
"""

from __future__ import annotations

import asyncio
import contextlib


class NetProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes.update((writer, up_writer))
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = await reader.readuntil(b"\r\n\r\n")
            host = f"{self._target[0]}:{self._target[1]}".encode()
            lines = [
                b"Host: " + host if line.lower().startswith(b"host:") else line
                for line in head.split(b"\r\n")
            ]
            up_writer.write(b"\r\n".join(lines))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes.discard(writer)
        self._pipes.discard(up_writer)
