"""The virus-scan hook: ClamAV's clamd when ``PORTAL_CLAMD`` is set, otherwise none.

A scanner is any object with ``scan(path) -> "clean" | "infected"``; it may raise, and the store
then keeps the file quarantined (status ``error``) until ``flask --app wsgi evidence rescan``.
``ClamdScanner`` speaks clamd's INSTREAM protocol over a UNIX or TCP socket with the standard
library only: ``unix:/run/clamav/clamd.ctl`` or ``tcp:127.0.0.1:3310``.
"""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

CLEAN = "clean"
INFECTED = "infected"


class ScanError(RuntimeError):
    """The scanner could not give a verdict."""


class Scanner(Protocol):
    def scan(self, path: Path) -> str: ...


class NoScanner:
    """No scanner configured: every file is marked clean at once (documented in the README)."""

    def scan(self, path: Path) -> str:
        return CLEAN


class ClamdScanner:
    """clamd's INSTREAM over a socket. The timeout stays under the web worker's (gunicorn: 30 s):
    a slow scan ends as ``error`` (quarantined, retried by ``evidence rescan``), not a killed
    request."""

    CHUNK = 64 * 1024
    MAX_REPLY = 4096

    def __init__(self, address: str, timeout: float = 20.0):
        self.address = address
        self.timeout = timeout
        self.family, self.target = parse_address(address)

    def __repr__(self) -> str:
        return f"ClamdScanner({self.address!r})"

    def _connect(self) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.target)
        except BaseException:
            sock.close()
            raise
        return sock

    def scan(self, path: Path) -> str:
        try:
            with self._connect() as sock, Path(path).open("rb") as fh:
                sock.sendall(b"zINSTREAM\0")
                while chunk := fh.read(self.CHUNK):
                    sock.sendall(struct.pack("!I", len(chunk)) + chunk)
                sock.sendall(struct.pack("!I", 0))
                reply = self._read_reply(sock)
        except OSError as exc:
            raise ScanError(f"clamd at {self.address} failed: {exc}") from exc
        return self._verdict(reply)

    def _read_reply(self, sock: socket.socket) -> str:
        data = b""
        while b"\0" not in data and len(data) < self.MAX_REPLY:
            part = sock.recv(1024)
            if not part:
                break
            data += part
        return data.split(b"\0", 1)[0].decode("utf-8", "replace").strip()

    def _verdict(self, reply: str) -> str:
        if reply.endswith(" OK") or reply == "OK":
            return CLEAN
        if reply.endswith(" FOUND"):
            log.warning("clamd found %s", reply.removeprefix("stream:").strip())
            return INFECTED
        raise ScanError(f"unexpected clamd reply: {reply[:200]!r}")


def parse_address(address: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    """``unix:/path/to/socket`` or ``tcp:host:port`` (``tcp:[::1]:3310`` for IPv6)."""
    scheme, _, rest = address.strip().partition(":")
    if scheme == "unix" and rest.startswith("/"):
        return socket.AF_UNIX, rest
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 < int(port) < 65536:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            return family, (host, int(port))
    raise ValueError(
        f"PORTAL_CLAMD must be unix:/path/to/clamd.sock or tcp:host:port, got {address!r}"
    )


def from_config(value: str) -> Scanner:
    return ClamdScanner(value) if value.strip() else NoScanner()
