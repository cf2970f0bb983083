"""Wi-Fi uploader: unsynced journal records to the operator's `tapkit serve`, by HTTP POST.

The main loop calls `poll(term)` once per pass (firmware/app.py imports this module only on a board
with a network part, so a USB-only terminal never pays its heap). Every call does one small,
non-blocking step and returns at once: the socket is non-blocking, readiness is asked with
select.poll(0), and a whole exchange has a deadline. A tap is never kept waiting by the upload.

One exchange (the format is card_schema/upload.py, the server host_tools/backoffice/server.py):
    POST /v1/batch HTTP/1.0   body: batch head | [the record acked_seq, the anchor] up to _BATCH
                              records from acked_seq + 1
    200                       answer head (acked, server time) | signed config blobs
then: journal.ack(acked) (the records are durable in the store), the clock set when it drifts more
than _DRIFT s, and every signed blob verified and installed (firmware/install.py, imported lazily).
On any failure (no network, refused connection, timeout, a non-200 answer) the uploader backs off
(2 s, doubling up to 5 min); after a success it goes on at once while records are unsynced, else it
checks in every _IDLE_MS for time and config.

Why a hand-written HTTP/1.0 client: MicroPython's `requests` (urequests) reads whole answers into
strings, blocks in connect/recv and costs several KB of bytecode; this needs one preallocated buffer,
one request shape and a status line. HTTP/1.0: one request per connection, the end of the answer is the
server closing it (no chunked decoding). The server address in config.json "server" is "IP:PORT" (DNS
would block the loop).

    config.json: "server": "10.0.0.5:8080"; optional "wifi_ssid", "wifi_password" (ESP32),
    "upload_backoff_max_ms" (300000), "upload_idle_ms" (60000)
"""

import socket
import struct
import time

import select

from card_schema import taprecord
from card_schema.compat import const

# The format is card_schema.upload's, copied as private consts (no heap; tests/firmware/test_const_owners.py)
_BATCH_MAGIC = const(b"TKB1")  # = card_schema.upload.BATCH_MAGIC
_BATCH_FMT = const("<4sIIIIH")  # = card_schema.upload.BATCH_FMT
_HEAD = const(22)  # = card_schema.upload.BATCH_HEAD
_ANCHOR = const(0x8000)  # = card_schema.upload.ANCHOR
_ANSWER_MAGIC = const(b"TKA1")  # = card_schema.upload.ANSWER_MAGIC
_ANSWER_FMT = const("<4sIIB")  # = card_schema.upload.ANSWER_FMT
_ANSWER_HEAD = const(13)  # = card_schema.upload.ANSWER_HEAD
_BLOB_LEN_FMT = const("<H")  # = card_schema.upload.BLOB_LEN_FMT
_BATCH = const(8)  # records per POST: 22 + 8 * 64 = 534 bytes of body
_TIMEOUT_MS = const(10000)  # one whole exchange
_MIN_BACKOFF = const(2000)
_MAX_BACKOFF = const(300000)
_IDLE_MS = const(60000)
_MAX_ANSWER = const(12288)
_DRIFT = const(5)
_MIN_TIME = const(1577836800)
_EINPROGRESS = const(115)
_POLLOUT = const(4)
_POLLIN = const(1)
_POLLERR = const(8)
_POLLHUP = const(16)

_up = None


def poll(term):
    """One step of the uploader of `term` (created on the first call). Never raises."""
    global _up
    if _up is None:
        server = term.config.get("server")
        if not server:
            return
        _up = Uploader(term, server)
    _up.poll()


class Uploader:
    def __init__(self, term, server):
        host, port = server.rsplit(":", 1)
        self.addr = socket.getaddrinfo(host, int(port))[0][-1]
        self.host = server
        self.term = term
        self.sock = None  # type: socket.socket | None
        self.poller = None  # type: select.poll | None
        self.state = 0  # 0 idle, 1 connecting/sending, 2 receiving
        self.next = time.ticks_ms()
        self.deadline = time.ticks_ms()
        self.backoff = _MIN_BACKOFF
        self.sent_to = 0
        self.out = b""
        self.off = 0
        self.ans = bytearray()
        self.uploads = self.failures = 0
        self.last_error = ""
        self.max_backoff = int(term.config.get("upload_backoff_max_ms", _MAX_BACKOFF))
        self.idle = int(term.config.get("upload_idle_ms", _IDLE_MS))
        self._req = bytearray(_HEAD + taprecord.SIZE * (_BATCH + 1))

    def poll(self):
        try:
            if self.state == 0:
                self._start()
            elif time.ticks_diff(time.ticks_ms(), self.deadline) > 0:
                raise OSError(110, "server timeout")  # ETIMEDOUT
            elif self.state == 1:
                self._send()
            else:
                self._recv()
        except Exception as e:  # noqa: BLE001 - no network trouble may stop a validator
            self._fail(e)

    def _start(self):
        now = time.ticks_ms()
        if time.ticks_diff(now, self.next) < 0:
            return
        net = self.term.board.net
        if not net.isconnected():
            c = self.term.config
            if c.get("wifi_ssid"):
                net.connect(c["wifi_ssid"], c.get("wifi_password"))  # starts it, does not wait
            self.next = time.ticks_add(now, _MIN_BACKOFF)
            return
        j = self.term.journal
        buf = self._req
        a = j.acked_seq
        n = flag = 0
        rs = taprecord.SIZE
        # the last acknowledged record goes first, as the chain's anchor, while it is on flash
        for rec in j.records(a or 1, _BATCH + 1):
            if not n and a and taprecord.seq_of(rec) == a:
                flag = _ANCHOR
            elif n - (flag and 1) >= _BATCH:
                break
            buf[_HEAD + n * rs : _HEAD + n * rs + rs] = rec
            n += 1
        self.sent_to = a + n - (flag and 1)
        i = self.term.info
        struct.pack_into(
            _BATCH_FMT,
            buf,
            0,
            _BATCH_MAGIC,
            self.term.terminal_id,
            i.get("fares_ver", 0),
            i.get("deny_ver", 0),
            i.get("deny_delta_ver", 0),
            n | flag,
        )
        size = _HEAD + n * rs
        self.out = (
            b"POST /v1/batch HTTP/1.0\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n" % (self.host.encode(), size)
        ) + bytes(memoryview(buf)[0:size])
        self.off = 0
        s = socket.socket()
        self.sock = s
        s.setblocking(False)
        try:
            s.connect(self.addr)
        except OSError as e:
            if e.args[0] != _EINPROGRESS:
                raise
        self.poller = select.poll()
        self.poller.register(s, _POLLOUT)
        self.deadline = time.ticks_add(now, _TIMEOUT_MS)
        self.state = 1

    def _ready(self):
        p = self.poller
        if p is None:
            raise OSError(9, "no socket")  # EBADF: cannot happen while state != 0
        ev = p.poll(0)
        if not ev:
            return False
        if ev[0][1] & (_POLLERR | _POLLHUP) and self.state == 1:
            raise OSError(111, "connection refused")  # ECONNREFUSED
        return True

    def _send(self):
        if not self._ready():
            return
        out = self.out
        s = self.sock
        p = self.poller
        if s is None or p is None:
            raise OSError(9, "no socket")
        self.off += s.send(memoryview(out)[self.off :])
        if self.off >= len(out):
            self.out = b""
            self.ans = bytearray()
            p.modify(s, _POLLIN)
            self.state = 2

    def _recv(self):
        if not self._ready():
            return
        s = self.sock
        if s is None:
            raise OSError(9, "no socket")
        data = s.recv(1024)
        if data:
            if len(self.ans) + len(data) > _MAX_ANSWER:
                raise ValueError("answer too long")
            self.ans += data
            return
        self._close()
        ans = self.ans
        self.ans = bytearray()
        self.state = 0
        self._answer(ans)

    def _answer(self, ans):
        i = ans.find(b"\r\n\r\n")
        if i < 0 or ans[:5] != b"HTTP/":
            raise ValueError("not an HTTP answer")
        status = bytes(ans[9:12])
        if status != b"200":
            line = bytes(ans[: ans.find(b"\r\n")]).decode()
            body = bytes(ans[i + 4 : i + 84]).strip()
            raise ValueError("server: %s %s" % (line, body.decode()))
        i += 4
        magic, acked, t, n = struct.unpack_from(_ANSWER_FMT, ans, i)
        if magic != _ANSWER_MAGIC:
            raise ValueError("not a tapkit answer")
        term = self.term
        j = term.journal
        if j.acked_seq < acked <= self.sent_to:
            j.ack(acked)  # durable in the store: the journal may reclaim them
        clock = term.board.clock
        if t > _MIN_TIME and abs(clock.time() - t) > _DRIFT:
            clock.set(t)
        if n:
            self._install(ans, i + _ANSWER_HEAD, n)
        self.uploads += 1
        self.backoff = _MIN_BACKOFF
        now = time.ticks_ms()
        self.next = now if j.unsynced else time.ticks_add(now, self.idle)

    def _install(self, ans, pos, n):
        from firmware import install, serialsync

        key = getattr(self.term, "config_key", None)
        try:
            for _ in range(n):
                ln = struct.unpack_from(_BLOB_LEN_FMT, ans, pos)[0]
                blob = bytes(ans[pos + 2 : pos + 2 + ln])
                pos += 2 + ln
                try:
                    if key is None:
                        raise ValueError("no config key")
                    install.apply(key, blob, self.term.info)
                except ValueError as e:
                    self.term.log_error("wifi config", e)
        finally:
            serialsync._unload()

    def _close(self):
        s = self.sock
        self.sock = self.poller = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _fail(self, e):
        self._close()
        self.state = 0
        self.out = b""
        self.ans = bytearray()
        self.failures += 1
        self.last_error = "%s %s" % (type(e).__name__, e)
        wait = self.backoff
        self.next = time.ticks_add(time.ticks_ms(), wait)
        self.backoff = min(wait * 2, self.max_backoff)
        self.term.board.log("wifi: %s; next try in %d ms" % (self.last_error, wait))
