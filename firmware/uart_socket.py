"""A machine.UART look-alike over TCP, for the virtual board (MicroPython unix port).

The virtual board wires its "UART2" to the emulated PN532 (emulator/pn532.py serves it on
127.0.0.1:<port>). The driver only uses the part of the machine.UART API below, so the same
firmware/pn532.py runs on an ESP32 and on the unix port.

    from firmware.uart_socket import SocketUART
    uart = SocketUART("127.0.0.1", 40123, timeout_ms=100)
    uart.write(b"\\x55\\x55\\x00\\x00")
    n = uart.any(); got = uart.readinto(buf, n)

If the emulator goes away (closed connection), the next call reconnects, with bounded tries, as a
UART whose peer was power-cycled: bytes in flight are lost, the driver's retries cover it.
Reads and writes allocate nothing after construction (bytes are staged in a fixed buffer).
"""

import select
import socket
from time import sleep_ms, ticks_add, ticks_diff, ticks_ms  # MicroPython only (unix port)

from card_schema.compat import const


_RXBUF = const(512)
_CONNECT_TRIES = const(50)
_CONNECT_PAUSE_MS = const(20)
_MAX_POLLS = const(100000)
_EAGAIN = const(11)  # errno EAGAIN on Linux
_POLLIN = const(0x0001)
_POLLOUT = const(0x0004)
_POLLERR_HUP = const(0x0018)  # POLLERR | POLLHUP


class SocketUART:
    def __init__(self, host, port, timeout_ms=100, rxbuf=_RXBUF):
        self._addr = socket.getaddrinfo(host, port)[0][-1]
        self.timeout_ms = timeout_ms
        self._rx = bytearray(rxbuf)
        self._r = 0
        self._w = 0
        self._sock = None
        self._poll = None
        self.reconnects = 0
        self._connect()

    # ---- connection ------------------------------------------------------------------------
    def _connect(self):
        self._close_sock()
        for _ in range(_CONNECT_TRIES):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.connect(self._addr)
            except OSError:
                s.close()
                sleep_ms(_CONNECT_PAUSE_MS)
                continue
            s.setblocking(False)
            self._sock = s
            self._poll = select.poll()
            self._poll.register(s, _POLLIN)
            self._r = 0
            self._w = 0
            return
        raise OSError(113)  # EHOSTUNREACH: no PN532 emulator listening

    def _close_sock(self):
        if self._sock is not None:
            if self._poll is not None:  # always, with a socket: both are set in _connect
                try:
                    self._poll.unregister(self._sock)
                except (OSError, ValueError, KeyError):
                    pass
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None

    def _reconnect(self):
        self.reconnects += 1
        self._connect()

    # ---- receive ---------------------------------------------------------------------------
    def _fill(self, timeout_ms):
        """If the staging buffer is empty, wait up to timeout_ms for bytes and stage them."""
        if self._r < self._w:
            return
        self._r = 0
        self._w = 0
        if self._poll is None:  # never connected
            raise OSError(9)  # EBADF
        ready = False
        for ev in self._poll.ipoll(timeout_ms):
            ready = True
            if ev[1] & _POLLERR_HUP and not ev[1] & _POLLIN:
                self._reconnect()
                return
        if not ready or self._sock is None:  # an event comes only from a registered socket
            return
        try:
            n = self._sock.readinto(self._rx)
        except OSError as e:
            if e.args and e.args[0] == _EAGAIN:
                return
            self._reconnect()
            return
        if n is None:
            return
        if n == 0:  # the emulator closed the connection
            self._reconnect()
            return
        self._w = n

    def any(self):
        """Number of bytes that can be read without waiting."""
        self._fill(0)
        return self._w - self._r

    def readinto(self, buf, nbytes=None):
        """Read up to nbytes (default len(buf)) into buf; wait at most timeout_ms for the first
        byte. Returns the count, or None on timeout (like machine.UART)."""
        want = len(buf) if nbytes is None else nbytes
        if want <= 0:
            return 0
        self._fill(self.timeout_ms)
        avail = self._w - self._r
        if avail <= 0:
            return None
        k = min(avail, want)
        rx = self._rx
        r = self._r
        for i in range(k):
            buf[i] = rx[r + i]
        self._r = r + k
        return k

    def read(self, n=None):
        """Read up to n bytes (all waiting bytes if n is None); None on timeout. Allocates."""
        if n is None:
            self._fill(self.timeout_ms)
            n = self._w - self._r
            if n <= 0:
                return None
        buf = bytearray(n)
        got = self.readinto(buf, n)
        if not got:
            return None
        return bytes(buf[:got])

    # ---- send ------------------------------------------------------------------------------
    def write(self, buf):
        """Write all of buf; returns its length. Reconnects once if the peer went away."""
        if self._sock is None:  # closed (deinit), or the last reconnect failed
            raise OSError(9)  # EBADF
        n = len(buf)
        sent = 0
        deadline = ticks_add(ticks_ms(), self.timeout_ms + 1000)
        for _ in range(_MAX_POLLS):
            if sent >= n:
                return n
            try:
                k = self._sock.send(buf if sent == 0 else memoryview(buf)[sent:])
            except OSError as e:
                if e.args and e.args[0] == _EAGAIN:
                    k = 0
                else:
                    # the emulator went away: reconnect and send the whole buffer again
                    self._reconnect()
                    sent = 0
                    continue
            if k:
                sent += k
            elif ticks_diff(ticks_ms(), deadline) >= 0:
                raise OSError(116)  # ETIMEDOUT: the peer does not take bytes
            else:
                sleep_ms(1)
        raise OSError(116)  # ETIMEDOUT

    def flush(self):
        pass

    def deinit(self):
        self._close_sock()

    close = deinit
