"""The HTTP listener: aiohttp on a bound socket, with the timeouts and the graceful
stop that a server facing arbitrary clients needs and aiohttp leaves to its user.

- A connection that has not sent a whole request head ``header_timeout_s`` after it
  opened, or after its previous answer, is closed (aiohttp's keep-alive timer, which
  it also arms when a connection opens: a slow or silent client cannot hold it).
- :func:`read_body` bounds the time a request body may take.
- :meth:`HttpServer.stop` drains: it takes the connections already waiting in the
  listen backlog, stops listening, answers every request already received (bytes
  still in the kernel's receive buffer included) and closes each connection as it
  goes idle; only what is left when the grace period ends is cut.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import select
import socket
import sys
import termios

from aiohttp import web

if sys.version_info >= (3, 11):
    timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    import contextlib

    @contextlib.asynccontextmanager
    async def timeout(seconds):
        """asyncio.timeout for Python 3.10: TimeoutError when the block runs too long."""
        if seconds is None:
            yield
            return
        task = asyncio.current_task()
        handle = asyncio.get_running_loop().call_later(seconds, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            raise TimeoutError from None
        finally:
            handle.cancel()

# How often a draining server looks at its connections.
_DRAIN_POLL_S = 0.01


async def read_body(request: web.BaseRequest, timeout_s: float | None) -> bytes:
    """The whole request body; TimeoutError when it takes longer than ``timeout_s``."""
    async with timeout(timeout_s):
        return await request.read()


def _unread_bytes(transport) -> int:
    """Bytes the kernel has received on this connection that were not read yet."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return 0
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


def _idle(connection) -> bool:
    """True when nothing received on the connection waits for an answer: it is closed,
    it waits for a request with no byte of one received, or it has answered with
    ``Connection: close`` (and only reads the rest of a refused body).

    aiohttp has no public flag for it; its own keep-alive check tests the first case
    the same way (the handler's ``_waiter`` pending: no request parsed or handled).
    """
    if connection.transport is None:
        return True
    try:
        keepalive, in_progress = connection._keepalive, connection._request_in_progress
        waiter = connection._waiter
    except AttributeError:  # an aiohttp without them: its own shutdown decides
        return True
    if not keepalive and not in_progress:
        return True
    return waiter is not None and not waiter.done() and not _unread_bytes(
        connection.transport)


class HttpServer:
    """An aiohttp application served on ``host:port``.

    Args:
      app: the application.
      header_timeout_s: see the module docstring.
    """

    def __init__(self, app: web.Application, *, header_timeout_s: float):
        # The grace is spent in stop(); aiohttp's own wait afterwards only cuts.
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=header_timeout_s,
                                     shutdown_timeout=0.1)
        self._socket: socket.socket | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Binds and starts serving; returns the port (``port`` < 1 picks a free one).
        ``reuse_port``: share the port with other processes (SO_REUSEPORT), the kernel
        spreading new connections over them."""
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, max(port, 0)))
        self._socket = sock
        await web.SockSite(self._runner, sock, backlog=1024).start()
        return sock.getsockname()[1]

    async def stop(self, grace_s: float) -> None:
        """Answers the requests received so far (within ``grace_s``), then stops."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        if self._socket is not None:
            # Connections the kernel completed wait in the listen backlog; closing the
            # socket would reset them, so they are accepted first.
            while loop.time() < deadline and select.select([self._socket], [], [], 0)[0]:
                await asyncio.sleep(0)
        for site in list(self._runner.sites):
            await site.stop()
        server = self._runner.server
        quiet = 0
        while server is not None and loop.time() < deadline:
            busy = False
            for connection in server.connections:
                if _idle(connection):
                    if connection.transport is not None:
                        connection.force_close()
                else:
                    busy = True
            # Idle twice in a row: a connection accepted just before the listener
            # closed has had its turns of the loop to register.
            quiet = 0 if busy else quiet + 1
            if quiet == 2:
                break
            await asyncio.sleep(_DRAIN_POLL_S)
        await self._runner.cleanup()
