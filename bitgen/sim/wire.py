"""The emulator's end of the serial line: a pseudo-terminal (the host opens its path with
pyserial, like /dev/ttyACM0) or a TCP socket (pyserial's socket:// URL)."""
from __future__ import annotations

import errno
import os
import select
import socket
import sys
import tty

from .machine import SimStop


class Wire:
    """Byte pipe with the interface the UART models use: read(wait) and write(data).

    ``read`` also watches ``control`` (the emulator's stdin): when it closes, the process that
    started the emulator is done with it and the emulation stops.
    """

    def __init__(self, fd: int, control: int | None = None, name: str = ""):
        self.fd = fd
        self.control = control
        self.name = name
        os.set_blocking(fd, False)

    def read(self, wait: float) -> bytes:
        fds = [self.fd] + ([self.control] if self.control is not None else [])
        ready, _, _ = select.select(fds, [], [], wait)
        if self.control is not None and self.control in ready:
            if not os.read(self.control, 4096):
                raise SimStop()
        if self.fd in ready:
            try:
                data = os.read(self.fd, 4096)
            except OSError as e:
                if e.errno in (errno.EIO, errno.EAGAIN):  # no client on the pty right now
                    return b""
                raise
            if not data and self.is_socket:
                raise SimStop()  # the host closed the connection
            return data
        return b""

    is_socket = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                # nobody reads: wait a little, then drop the byte as a real UART would
                if not select.select([], [self.fd], [], 0.2)[1]:
                    return
                continue
            except OSError as e:
                if e.errno == errno.EIO:
                    return
                raise
            view = view[n:]


def open_pty(control: int | None = None) -> tuple[Wire, str, int]:
    """-> (wire, path the host opens, slave fd to keep open while the emulator runs)."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline: bytes pass unchanged
    return Wire(master, control, "pty"), os.ttyname(slave), slave


def open_socket(port: int, control: int | None = None, host: str = "127.0.0.1") -> tuple[socket.socket, int]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1)
    return srv, srv.getsockname()[1]


def accept(srv: socket.socket, control: int | None = None) -> Wire:
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    w = Wire(conn.detach(), control, "socket")
    w.is_socket = True
    return w


def stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (OSError, ValueError):
        return None
