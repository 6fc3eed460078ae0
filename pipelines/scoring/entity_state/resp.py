"""A minimal Redis client (RESP2 over one TCP connection) for the shared entity state.

The state store needs a handful of commands (WATCH, MGET, MULTI, SET, EXEC, PING) on one
connection of its own: WATCH/MULTI/EXEC only mean something on the connection that
issued them. This is that connection, with no dependency; where the ``redis`` package
is installed its client would do the same.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse


class RedisError(RuntimeError):
    """An error reply of the server."""


class RespConnection:
    """One connection to a Redis server; ``command`` sends one command and reads its
    reply, ``pipeline`` sends several and reads all their replies."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, timeout: float = 5.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"not a redis:// URL: {url!r}")
        self.url = url
        self._sock = socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=timeout
        )
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._sock.makefile("rb")
        if parsed.password:
            self.command("AUTH", parsed.password)
        database = (parsed.path or "/0").strip("/") or "0"
        if database != "0":
            self.command("SELECT", database)

    def command(self, *args: str | bytes | int | float):
        return self.pipeline([args])[0]

    def pipeline(self, commands: list[tuple]) -> list:
        """Send ``commands`` at once; their replies in order (an error reply raises after
        all are read, so the connection stays in step)."""
        self._sock.sendall(b"".join(_encode(c) for c in commands))
        replies = [self._read() for _ in commands]
        for reply in replies:
            if isinstance(reply, RedisError):
                raise reply
        return replies

    def _read(self):
        line = self._file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            return data[:-2]
        if kind == b"*":
            size = int(rest)
            if size < 0:
                return None
            return [self._read() for _ in range(size)]
        raise ConnectionError(f"unexpected reply from redis: {line[:40]!r}")

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()


def _encode(args: tuple) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
