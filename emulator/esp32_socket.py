# The virtual board's `socket` module (MicroPython unix port; emulator/vboard.py deploys it as the
# board's socket.mpy): the unix port's sockets, raising the ESP32 port's errno numbers.
# ports/esp32/modsocket.c raises lwIP's errno as it is (mp_raise_OSError(errno)), and the ESP32
# port's errno is newlib's sys/errno.h (MICROPY_USE_INTERNAL_ERRNO 0): EINPROGRESS 119,
# ETIMEDOUT 116, EHOSTUNREACH 118, where Linux has 115, 110, 113 (see emulator/esp32_errno.py).
# A name that does not resolve raises OSError(-202): lwip_getaddrinfo's EAI_FAIL (202, lwIP's
# src/include/lwip/netdb.h), negated by modsocket.c ("raises negative error number", v1.20+).
# A socket is a small wrapper around the unix port's (a subclass of the native type cannot be
# polled): an io.IOBase whose ioctl gives select.poll the descriptor. connect, send, recv and
# readinto allocate nothing unless they raise: an upload makes the garbage it makes on the chip.
# Every name below is one the unix port has in its ROM qstr pool (sock, native, args, data...):
# the stand-in adds no name to the firmware's qstr pool but its file's (a Wi-Fi board is near the
# pool's next growth), and what it costs the heap it costs once, at the very start (vboard.py).
import io
import sys

path = sys.path
sys.path = []  # MicroPython >= 1.21: with no path, `import socket` is the built-in one
try:
    import socket as native
finally:
    sys.path = path
del path
# `native`, the unix port's own socket module, also serves the virtual board's UART wire to its
# PN532 emulator (firmware/uart_socket.py), which stands for a UART, not for a socket of the ESP32.


def __getattr__(name):  # AF_INET, SOCK_STREAM...: the unix port's, looked up, not copied
    return getattr(native, name)


def errno(e):
    """The OSError an ESP32 raises for the unix port's `e`."""
    n = e.errno
    if isinstance(n, int):
        # Linux errno -> the ESP32 port's (newlib), where they differ, as (Linux, ESP32) byte
        # pairs (a constant of the code: no heap, no name): EMSGSIZE 90 -> 122, EPROTOTYPE 91 ->
        # 107, ENOPROTOOPT 92 -> 109, EPROTONOSUPPORT 93 -> 123, EAFNOSUPPORT 97 -> 106,
        # EADDRINUSE 98 -> 112, EADDRNOTAVAIL 99 -> 125, ENETDOWN 100 -> 115, ENETUNREACH 101 ->
        # 114, ENETRESET 102 -> 126, ECONNABORTED 103 -> 113, EISCONN 106 -> 127, ENOTCONN 107 ->
        # 128, ETIMEDOUT 110 -> 116, EHOSTDOWN 112 -> 117, EHOSTUNREACH 113 -> 118, EALREADY
        # 114 -> 120, EINPROGRESS 115 -> 119. Equal on both: EAGAIN 11, EPIPE 32, EOPNOTSUPP
        # 95, ECONNRESET 104, ENOBUFS 105, ECONNREFUSED 111.
        t = (
            b"\x5a\x7a\x5b\x6b\x5c\x6d\x5d\x7b\x61\x6a\x62\x70\x63\x7d\x64\x73\x65\x72"
            b"\x66\x7e\x67\x71\x6a\x7f\x6b\x80\x6e\x74\x70\x75\x71\x76\x72\x78\x73\x77"
        )
        for i in range(0, len(t), 2):
            if t[i] == n:
                return OSError(t[i + 1])
    return e


class socket(io.IOBase):
    def __init__(self, *args):
        self.sock = native.socket(*args)

    def ioctl(self, req, arg):  # select.poll asks for the descriptor (MP_STREAM_GET_FILENO)
        return self.sock.fileno() if req == 10 else -1

    def setblocking(self, val):
        self.sock.setblocking(val)

    def close(self):
        self.sock.close()

    def __getattr__(self, name):  # fileno, settimeout, setsockopt...: the unix port's
        return getattr(self.sock, name)

    def connect(self, arg):
        try:
            self.sock.connect(arg)
        except OSError as e:
            raise errno(e)

    def send(self, data):
        try:
            return self.sock.send(data)
        except OSError as e:
            raise errno(e)

    def recv(self, n):
        try:
            return self.sock.recv(n)
        except OSError as e:
            raise errno(e)

    def readinto(self, buf, n=-1):
        try:
            return self.sock.readinto(buf) if n < 0 else self.sock.readinto(buf, n)
        except OSError as e:
            raise errno(e)


def getaddrinfo(host, port, *args):
    try:
        return native.getaddrinfo(host, port, *args)
    except OSError:
        raise OSError(-202)  # lwIP's EAI_FAIL, negated, as ports/esp32/modsocket.c raises it
