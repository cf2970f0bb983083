"""Wi-Fi uploader: unsynced journal records to the operator's `tapkit serve`, encrypted, by HTTP POST.

The main loop calls `poll(term)` once per pass while an exchange is due or under way (firmware/app.py
imports this module then, on a board with a network part, and forgets it between exchanges: a tap or
a USB sync never shares the heap with it, and a USB-only terminal never pays for it). Every call does
a bounded, non-blocking step (at most _STEP bytes sent or received) and returns: the socket is
non-blocking, readiness is asked with select.poll(0), and a whole exchange has a deadline. A tap is
never kept waiting by the upload: a card in the field stops the exchange under way (`stop`), which
is tried again _MIN_BACKOFF later; a line from a USB host stops it only when the heap lacks room for
the answer beside it (app.py Terminal.poll), else the exchange goes on.

One exchange (the format is card_schema/upload.py, the server host_tools/backoffice/server.py):
    POST /v1/batch HTTP/1.0   batch head (iv: a fresh nonce | its tag with the journal key) | [the record acked_seq, the anchor]
                              up to _BATCH records from acked_seq + 1, AES-CBC with the wire key
    200                       answer head, MAC'd with the journal key over the request's iv | maybe
                              one chunk of a signed config blob the terminal lacks, AES-CBC
The records are streamed from flash through one 512-byte buffer (journal.read, encrypted in place),
so a batch of 256 records (16 KB) costs the heap what one of 8 did. The answer head is checked first
(its MAC binds it to this request: a rogue or replayed answer is refused and changes nothing); then
journal.ack(acked) (the records are durable in the store) and the clock set when it drifts more than
_DRIFT s or is not set since power-up (hal.Clock ok 0). A config chunk is decrypted through the same buffer into the staging file install.part; when
the blob is complete the exchange ends and app.py, with this module forgotten, has it verified where
it lies and installed (firmware/install.py `wifi`: its heap is what this module took). The batch head
tells the server how much of which blob the terminal holds, so a download of any size resumes where
it stopped, across power cuts too.

Firmware (card_schema/release.py, docs/architecture.md "Firmware releases"): a batch answer without
a config chunk may offer a release (kind 4, n 0); then the exchange is `POST /v1/ota` instead, whose
head (TKO1, MAC'd with the journal key) reports the firmware status and asks for that release from
install.part's length; its answer is a batch answer (acked 0) whose chunk goes into install.part as
a config chunk does. The status is reported at boot and after a download (unless the switch to it comes first). What lasts between
exchanges is term.up[5] (the release offered; -1: report first) and term.up[6] (the last exchange
was POST /v1/ota: batches and firmware alternate while records wait).
On any failure (no network, refused connection, timeout, a non-200 or unverifiable answer) the
uploader backs off (2 s, doubling up to 5 min); after a success it goes on at once while records are
unsynced or a download is under way, else it checks in every _IDLE_MS for time and config.

Why no TLS: the measured cost of MicroPython's `ssl` (mbedTLS) handshake is about 30 KB of C heap
(a 16.7 KB block among it) beside 4 KB of the MicroPython heap, and seconds of ECC arithmetic that
would stall the main loop on an ESP32 without PSRAM; the per-terminal AES key costs one cipher object
(docs/architecture.md "Wi-Fi upload" has the figures and what each protects).

Why a hand-written HTTP/1.0 client: MicroPython's `requests` reads whole answers into strings, blocks
in connect/recv and costs several KB of bytecode; this needs one buffer, one request shape and a status
line. HTTP/1.0: one request per connection, the end of the answer is the server closing it. The server
address in config.json "server" is "IP:PORT" (DNS would block the loop).

    config.json: "server": "10.0.0.5:8080"; optional "wifi_ssid", "wifi_password" (ESP32),
    "upload_backoff_max_ms" (300000), "upload_idle_ms" (60000); keys.json "wire" (provisioning)
"""

import binascii
import errno
import socket
import struct
import time

import select

import firmware
from card_schema.compat import aes_cbc, const, urandom
from card_schema.crypto import cmac

# The format is card_schema.upload's, copied as private consts (no heap; tests/firmware/test_const_owners.py)
_BATCH_MAGIC = const(b"TKB2")  # = card_schema.upload.BATCH_MAGIC
_BATCH_FMT = const("<4sIIIIHBII16s")  # = card_schema.upload.BATCH_FMT
_ANCHOR = const(0x8000)  # = card_schema.upload.ANCHOR
_ANSWER_MAGIC = const(b"TKA2")  # = card_schema.upload.ANSWER_MAGIC
_ANSWER_FMT = const("<4sIIBIIII16s8s")  # = card_schema.upload.ANSWER_FMT
_ANSWER_HEAD = const(53)  # = card_schema.upload.ANSWER_HEAD
_ANSWER_MACED = const(45)  # = card_schema.upload.ANSWER_MACED
_TAGGED = const(31)  # = card_schema.upload.REQUEST_TAGGED
_BATCH = const(1024)  # records per POST: 47 + 1024 * 64 = 65,583 bytes of body, streamed
_BUF = const(512)  # the one buffer: 8 records out, or 512 bytes of a config chunk in
_STEP = const(4096)  # bytes sent or received per poll (a pass of the main loop)
_MAX_HEAD = const(1024)  # HTTP head + answer head (or an error text)
_TIMEOUT_MS = const(10000)  # one whole exchange
_MIN_BACKOFF = const(2000)
_MAX_BACKOFF = const(300000)
_IDLE_MS = const(60000)
_DRIFT = const(5)
_MIN_TIME = const(1577836800)
_POLLOUT = const(4)
_POLLIN = const(1)
_POLLERR = const(8)
_POLLHUP = const(16)
_PART = const("install.part")  # = firmware.install._PART
_FIRMWARE = const(4)  # = card_schema.release.KIND_FIRMWARE
_OTA_MAGIC = const(b"TKO1")  # = card_schema.release.OTA_MAGIC
_OTA_FMT = const("<4sI16sIBBIBII16s8s")  # = card_schema.release.OTA_FMT
_OTA_MACED = const(59)  # = card_schema.release.OTA_MACED

_up = None  # the exchange under way


def poll(term):
    """One step of the upload of `term`: an exchange is started when one is due (term.up[0]).
    Returns True while one is under way; False when none is (app.py then forgets this module: its
    state between exchanges is term.up). Never raises."""
    global _up
    if _up is None:
        _up = Uploader(term, term.config["server"])
    u = _up
    u.poll()
    term.up[0:5] = (u.next, u.backoff, u.key, u.part, u.addr)
    if u.state == 0:
        _up = None
        return False
    return True


def stop(term):
    """Drop the exchange under way: a tap or a USB host needs the heap now. The socket is closed
    and the upload tried again _MIN_BACKOFF later, not counted as a failure (a cut chunk of config
    is found in install.part again)."""
    global _up
    u = _up
    _up = None
    if u is not None:
        u._close()
        term.up[0] = time.ticks_add(time.ticks_ms(), _MIN_BACKOFF)
    firmware.forget("install", "store")  # a chunk's writes loaded store (2.6 KB): not in a tap


class Uploader:
    # Attribute and method names are chosen from names the board already has (qstrs: module doc of
    # docs/architecture.md "RAM on the board"): a Wi-Fi board is near the qstr pool's next growth.
    # One exchange; what lasts between them is the terminal's `up` list: [next try (ticks),
    # back-off (ms), wire key, install.part's [kind, version, total, received], address]
    def __init__(self, term, server):
        self.host = server
        self.term = term
        self.next, self.backoff, self.key, self.part, self.addr = term.up[0:5]
        if self.key is None:
            from firmware import store  # keys.json once: the wire key (app.py does not keep it)

            w = (store.load("keys.json", {}) or {}).get("wire")
            firmware.forget("store")
            self.key = binascii.unhexlify(w) if w else None
        self.backoff = self.backoff or _MIN_BACKOFF
        self.sock = None  # type: socket.socket | None
        self.poller = None  # type: select.poll | None
        self.state = 0  # 0 idle, 1 sending, 2 receiving
        self.deadline = time.ticks_ms()
        self.buf = bytearray(_BUF)
        self.out = memoryview(b"")  # what is being sent
        self.off = 0
        self.seq = 0  # next record to stream
        self.pending = 0  # records still to stream
        self.sent_to = 0
        self.iv = b""
        self.aes = None  # the records' cipher, then the chunk's
        self.ans = None  # type: bytearray | None  # the HTTP head and the answer head, until parsed
        self.size = 0  # bytes of buf waiting to make a 16-byte block
        self.chunk = (
            None  # [plain bytes of this answer's chunk still to write, kind, version, total]
        )
        self.max_backoff = int(term.config.get("upload_backoff_max_ms", _MAX_BACKOFF))
        self.idle = int(term.config.get("upload_idle_ms", _IDLE_MS))

    def poll(self):
        try:
            if self.state == 0:
                self._start()
            elif time.ticks_diff(time.ticks_ms(), self.deadline) > 0:
                raise OSError(errno.ETIMEDOUT, "server timeout")
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
        if self.key is None:
            raise ValueError("no wire key in keys.json: provision the terminal again")
        if self.part is None:
            install = firmware.load("install")
            self.part = list(install.part())
            firmware.forget("install", "store")
        j = self.term.journal
        p = self.part
        up = self.term.up
        # firmware (POST /v1/ota): a status report, or the next chunk of the release offered; never
        # over a config blob install.part holds; every other exchange while records wait or while
        # the report is due (a batch's check-in brings config, and the offer)
        up[6] = up[5] and p[0] in (0, _FIRMWARE) and not (up[6] and (j.unsynced or up[5] < 0))
        if up[6]:
            head = self.ota()
        else:
            a = j.acked_seq
            n = min(j.head_seq - a, _BATCH)
            # the last acknowledged record goes first, as the chain's anchor, while it is on flash
            flag = _ANCHOR if a and j.read(a, memoryview(self.buf)[0:64]) else 0
            self.seq = a if flag else a + 1
            self.pending = n + (1 if flag else 0)
            self.sent_to = a + n
            nonce = urandom(8)
            i = self.term.info
            head = struct.pack(
                _BATCH_FMT,
                _BATCH_MAGIC,
                self.term.terminal_id,
                i.get("fares_ver", 0),
                i.get("deny_ver", 0),
                i.get("deny_delta_ver", 0),
                self.pending | flag,
                p[0],
                p[1],
                p[3],
                nonce,
            )
            # iv = nonce | tag: the tag (the journal key over the head) makes the server answer
            self.iv = nonce + cmac(self.term.journal.key, head[:_TAGGED] + nonce)[:8]
            head = head[:_TAGGED] + self.iv
        self.aes = aes_cbc(self.key, self.iv)
        self.out = memoryview(
            b"POST /v1/%s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\n\r\n"
            % (b"ota" if up[6] else b"batch", self.host.encode(), len(head) + self.pending * 64)
            + head
        )
        self.off = 0
        if self.addr is None:
            # the ESP32 port raises OSError(-202) (lwIP EAI_FAIL) or OSError(-2) when a name does
            # not resolve: _fail backs off, the next try asks again
            host, port = self.host.rsplit(":", 1)
            self.addr = socket.getaddrinfo(host, int(port))[0][-1]
        s = socket.socket()
        self.sock = s
        s.setblocking(False)
        try:
            s.connect(self.addr)
        except OSError as e:
            # by name: the number is the port's (EINPROGRESS is 115 on Linux, 119 in the ESP32
            # port's newlib/lwIP errno, which the virtual board's socket module raises too)
            if e.args[0] != errno.EINPROGRESS:
                raise
        self.poller = select.poll()
        self.poller.register(s, _POLLOUT)
        self.deadline = time.ticks_add(now, _TIMEOUT_MS)
        self.state = 1

    def ota(self):
        """The firmware status head (POST /v1/ota, card_schema/release.py TKO1): running release,
        state, the last update's end, and the release it asks chunks of (the one offered, or the one
        install.part holds) with how much of it is here (install.part's length: a download resumes
        after a power cut or a lost connection). The answer is a batch answer (acked 0) with maybe
        the next chunk, which goes into install.part as a config chunk does."""
        t = self.term
        p = self.part
        o = t.info.get("ota") or (0, 0, 0, 0, 0)  # [state, running, staged, last, result, why]
        mine = p[0] == _FIRMWARE
        w = t.up[5]
        if w <= 0:
            w = p[1] if mine else 0
        if o[0] > 1:
            w = o[2]  # staging, staged or on trial: that release (a report)
        self.pending = 0
        self.sent_to = 0
        self.iv = urandom(16)
        head = struct.pack(
            _OTA_FMT,
            _OTA_MAGIC,
            t.terminal_id,
            t.info["board"].encode(),
            o[1],
            o[0] or (1 if mine else 0),  # release.DOWNLOADING while install.part holds one
            0,
            o[3],
            o[4],
            w,
            p[3] if mine and p[1] == w else 0,
            self.iv,
            b"",
        )[0:_OTA_MACED]
        return head + cmac(t.journal.key, head)[0:8]

    def _ready(self):
        p = self.poller
        if p is None:
            raise OSError(errno.EBADF, "no socket")  # cannot happen while state != 0
        ev = p.poll(0)
        if not ev:
            return False
        if ev[0][1] & (_POLLERR | _POLLHUP) and self.state == 1:
            raise OSError(errno.ECONNREFUSED, "connection refused")
        return True

    def _send(self):
        s = self.sock
        budget = _STEP
        while budget > 0 and self._ready():
            if self.off >= len(self.out):
                if not self.pending:
                    self.ans = bytearray()
                    self.poller.modify(s, _POLLIN)  # type: ignore[union-attr]
                    self.state = 2
                    return
                # the next records, straight from flash into the buffer, encrypted in place
                mv = memoryview(self.buf)[0 : min(self.pending, _BUF // 64) * 64]
                k = self.term.journal.read(self.seq, mv)
                if not k:
                    raise ValueError("journal record %d unreadable" % self.seq)
                mv = mv[0 : k * 64]
                self.aes.encrypt(mv, mv)  # type: ignore[union-attr]
                self.seq += k
                self.pending -= k
                self.out = mv
                self.off = 0
            w = s.send(self.out[self.off :])  # type: ignore[union-attr]
            if not w:
                return
            self.off += w
            budget -= w

    def _recv(self):
        s = self.sock
        budget = _STEP
        mv = memoryview(self.buf)
        while budget > 0 and self._ready():
            ans = self.ans
            if ans is not None:  # the HTTP head and the answer head, in small reads
                k = s.readinto(mv[0:256])  # type: ignore[union-attr]  # no fresh block per read
                if k is None:
                    return
                if k:
                    if len(ans) + k > _MAX_HEAD:
                        raise ValueError("answer head too long")
                    ans += mv[0:k]
                    budget -= k
                    self._answer()
                    continue
                i = ans.find(b"\r\n\r\n")
                if i < 0 or ans[:5] != b"HTTP/":
                    raise ValueError("not an HTTP answer")
                line = bytes(ans[: ans.find(b"\r\n")]).decode()
                raise ValueError("server: %s %s" % (line, bytes(ans[i + 4 : i + 84]).decode()))
            # a config chunk: whole blocks decrypted into the staging file, the rest kept
            k = s.readinto(mv[self.size :])  # type: ignore[union-attr]
            if k is None:
                return
            n = self.size + k
            whole = n // 16 * 16
            c = self.chunk
            if c is not None and whole:
                b = mv[0:whole]
                self.aes.decrypt(b, b)  # type: ignore[union-attr]
                w = min(whole, c[0])
                if w:
                    from firmware import store

                    store.append(_PART, b[0:w])
                    c[0] -= w
                    p = self.part
                    p[0], p[1], p[2] = c[1], c[2], c[3]  # type: ignore[index]
                    p[3] += w  # type: ignore[index]
            self.size = n - whole
            if self.size:
                self.buf[0 : self.size] = self.buf[whole:n]
            budget -= k
            if not k:  # the server closed: the answer is complete
                self._close()
                self.state = 0
                # a complete blob is verified and installed once this module is forgotten (app.py
                # install.wifi: the heap its code takes is what the install needs)
                firmware.forget("install", "store")
                return

    def _answer(self):
        """The answer head, once it is all here: check its MAC, then ack and set the clock."""
        ans = self.ans
        i = ans.find(b"\r\n\r\n")  # type: ignore[union-attr]
        if i < 0:
            return
        if ans[:5] != b"HTTP/":  # type: ignore[index]
            raise ValueError("not an HTTP answer")
        if bytes(ans[9:12]) != b"200":  # type: ignore[index]
            return  # the text of the refusal is read to the end (_recv raises with it)
        h = i + 4
        if len(ans) < h + _ANSWER_HEAD:  # type: ignore[arg-type]
            return
        magic, acked, t, kind, version, total, off, n, civ, mac = struct.unpack_from(
            _ANSWER_FMT, ans, h
        )
        if magic != _ANSWER_MAGIC:
            raise ValueError("not a tapkit answer")
        if cmac(self.term.journal.key, self.iv + bytes(ans[h : h + _ANSWER_MACED]))[:8] != mac:  # type: ignore[index]
            raise ValueError("answer MAC does not verify: not this terminal's server")
        term = self.term
        j = term.journal
        if j.acked_seq < acked <= self.sent_to:
            j.ack(acked)  # durable in the store: the journal may reclaim them
        clock = term.board.clock
        if t > _MIN_TIME and (not clock.ok or abs(clock.time() - t) > _DRIFT):
            clock.set(t)
        self.backoff = _MIN_BACKOFF
        now = time.ticks_ms()
        self.chunk = None
        p = self.part
        up = term.up
        if kind == _FIRMWARE:
            up[5] = version  # a release offered (n 0) or under way: POST /v1/ota asks for it
        elif up[6]:
            up[5] = 0  # nothing for this terminal (now): asked again when a batch answer offers
        # on at once while records wait, the server has config or firmware for us or the status is
        # to be reported, else check in later
        self.next = now if j.unsynced or kind or up[5] else time.ticks_add(now, self.idle)
        if kind and n:
            ok = p == [kind, version, total, off]  # it continues what install.part holds
            if not off:
                # collected first (a module is many blocks): the free space for it, a fresh
                # staging file
                install = firmware.load("install")

                try:
                    install.put(0, total, b"")
                    p[0] = p[1] = p[2] = p[3] = 0  # type: ignore[index]
                    ok = True
                except ValueError as e:  # no room: uploads go on, the download waits
                    term.log_error("wifi config", e)
                    self.next = time.ticks_add(now, self.idle)
            elif not ok:
                p[0] = p[1] = p[2] = p[3] = 0  # type: ignore[index]  # not ours: afresh next time
            if ok:
                self.chunk = [n, kind, version, total]
                self.aes = aes_cbc(self.key, civ)
        rest = memoryview(ans)[h + _ANSWER_HEAD :]  # type: ignore[arg-type]
        self.ans = None
        # at most one read (256 bytes) of the chunk came with the head: the next read joins it
        self.size = len(rest)
        self.buf[0 : self.size] = rest

    def _close(self):
        s = self.sock
        self.sock = self.poller = None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def _fail(self, e):
        up = self.term.up
        if up[6] and not isinstance(e, OSError):
            up[5] = 0  # the server answered POST /v1/ota with a refusal: not again until it offers
        self._close()
        self.state = 0
        self.out = memoryview(b"")
        self.ans = None
        self.part = None  # read install.part again: what a cut chunk left of it
        firmware.forget("install", "store")  # what the failed step had loaded
        wait = self.backoff
        self.next = time.ticks_add(time.ticks_ms(), wait)
        self.backoff = min(wait * 2, self.max_backoff)
        self.term.board.log("wifi: %s %s; next try in %d ms" % (type(e).__name__, e, wait))
