"""A machine.UART look-alike over TCP, for the virtual board (MicroPython unix port).

The virtual board wires its "UART2" to the emulated PN532 (emulator/pn532.py serves it on
127.0.0.1:<port>). The driver only uses the part of the machine.UART API below, so the same
firmware/pn532.py runs on an ESP32 and on the unix port.

    from firmware.uart_socket import SocketUART
    uart = SocketUART("127.0.0.1", 40123, timeout_ms=100)
    uart.write(b"\\x55\\x55\\x00\\x00")
    if uart.any(): got = uart.readinto(buf, n)

If the emulator goes away (closed connection), the next read or write reconnects, with bounded
tries, as a UART whose peer was power-cycled: bytes in flight are lost, the driver's retries cover
it. Reads go straight from the (non-blocking) socket into the caller's buffer and allocate nothing.
Like machine.UART on some ports, `any()` says 1 when bytes are waiting, not how many.
"""

import errno
import select
import socket
from time import sleep_ms  # MicroPython only (unix port)

from micropython import const

# The virtual board's socket module (emulator/esp32_socket.py) raises the ESP32 port's errno
# numbers through a wrapper; this wire stands for a UART, not for a socket of the ESP32, so it
# takes the unix port's own sockets (socket.native) when they are there: no wrapper on the tap path
# (pn532's heap_lock test). It compares only EAGAIN, 11 in both numberings.
native = getattr(socket, "native", socket)  # a name the board has (no new qstr)

_CONNECT_TRIES = const(50)
_CONNECT_PAUSE_MS = const(20)
_POLLIN = const(0x0001)


class SocketUART:
    def __init__(self, host, port, timeout_ms=100):
        self._addr = native.getaddrinfo(host, port)[0][-1]
        self.timeout_ms = timeout_ms
        self._poll = select.poll()  # holds the socket while connected
        self._sock = None
        self.reconnects = -1  # _connect counts: the first connection makes it 0
        self._connect()

    def _connect(self):
        """(Re)connect: drop the old socket, then bounded tries to reach the emulator."""
        s = self._sock
        if s is not None:
            self._sock = None
            self._poll.unregister(s)
            s.close()
        self.reconnects += 1
        for _ in range(_CONNECT_TRIES):
            s = native.socket()
            try:
                s.connect(self._addr)
            except OSError:
                s.close()
                sleep_ms(_CONNECT_PAUSE_MS)
                continue
            s.setblocking(False)
            self._poll.register(s, _POLLIN)
            self._sock = s
            return
        raise OSError(errno.EHOSTUNREACH)  # no PN532 emulator listening

    def any(self, wait_ms=0):
        """1 when bytes can be read (waiting at most wait_ms for them), else 0. A closed or
        broken connection also counts as readable: readinto then finds out and reconnects."""
        for _ in self._poll.ipoll(wait_ms):
            return 1
        return 0

    def readinto(self, buf, nbytes=None):
        """Read up to nbytes (>= 1, default len(buf)) into buf; wait at most timeout_ms for the
        first byte. Returns the count, or None on timeout (like machine.UART)."""
        s = self._sock
        if s is None or not self.any(self.timeout_ms):  # closed, or nothing came in time
            return None
        try:
            n = s.readinto(buf, len(buf) if nbytes is None else nbytes)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return None
            n = 0  # reset by the peer
        if n == 0:  # the emulator closed the connection
            self._connect()
            return None
        return n

    def write(self, buf):
        """Write all of buf; returns its length. Reconnects (and sends all of buf again) if the
        peer went away; OSError(ETIMEDOUT) if it takes no bytes for about timeout_ms + 1 s."""
        if self._sock is None:  # the last reconnect failed
            raise OSError(errno.EBADF)
        n = len(buf)
        sent = 0
        for _ in range(self.timeout_ms + 1000):
            try:
                sent += self._sock.send(memoryview(buf)[sent:] if sent else buf)
                if sent >= n:
                    return n
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    sleep_ms(1)
                else:
                    self._connect()
                    sent = 0
        raise OSError(errno.ETIMEDOUT)  # the peer does not take bytes
