"""Messages between testbed processes over one TCP connection: a fixed header, then the payload bytes."""

from __future__ import annotations

import socket
import struct
from typing import Optional

HEADER = struct.Struct("!qI")
"""Frame id (signed: negative ids are control messages) and payload length in bytes."""
HEADER_BYTES = HEADER.size


def send_message(sock: socket.socket, frame: int, payload: bytes) -> None:
    """Send one message (header and payload in one call, so TCP sees one stream of full segments)."""
    sock.sendall(HEADER.pack(frame, len(payload)) + payload)


def recv_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    """Exactly n bytes, or None when the peer closed the connection first."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            return None
        got += k
    return bytes(buf)


def recv_message(sock: socket.socket) -> Optional[tuple[int, bytes]]:
    """(frame id, payload) of the next message, or None at the end of the stream."""
    head = recv_exact(sock, HEADER_BYTES)
    if head is None:
        return None
    frame, size = HEADER.unpack(head)
    payload = recv_exact(sock, size) if size else b""
    return None if payload is None else (frame, payload)


def set_congestion_control(sock: socket.socket, name: Optional[str]) -> None:
    """Use congestion control `name` on this socket (None: the namespace's default)."""
    if name:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())


def listen(host: str, port: int, congestion_control: Optional[str] = None) -> socket.socket:
    """A listening TCP socket (address reuse on, so a quick rerun finds the port free); accepted connections
    inherit its congestion control."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    set_congestion_control(srv, congestion_control)
    srv.bind((host, port))
    srv.listen(16)
    return srv


def connect(host: str, port: int, congestion_control: Optional[str] = None, timeout_s: float = 10.0) -> socket.socket:
    """A connected TCP socket with Nagle off (each message leaves as soon as it is written)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    set_congestion_control(sock, congestion_control)
    sock.settimeout(timeout_s)
    sock.connect((host, port))
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
