"""Serial link to a terminal: request/response over the sync line protocol (card_schema/frames.py).

    with SerialLink("/dev/ttyUSB0") as link:
        info = link.identify()                 # dict: terminal_id, head_seq, acked_seq, clock...
        records = link.pull(info["acked_seq"] + 1, 11)
        link.ack(taprecord.seq_of(records[-1]))

Every request carries a fresh req_id; the reader skips everything that is not a response frame with that
req_id (REPL output, noise, the echo of our own request, a late answer to an earlier request) and sends
the same request again when no answer comes in time. Requests are idempotent on the terminal (PULL reads,
ACK only moves forward, SET_CLOCK sets), so a retransmission is always safe. Transport failures become
`LinkError` with one line that says what to do.
"""

import errno
import json
import os
import struct
import random
import time

import serial

from card_schema import frames, frames_host, signed
from host_tools import TapkitError

try:
    from termios import (
        error as _TermiosError,
    )  # pyserial's flush() (tcdrain) on an unplugged cable
except ImportError:  # Windows
    _TermiosError = OSError

# What a serial port raises when the cable goes away mid-exchange: one clear line for all of them
IO_ERRORS = (OSError, serial.SerialException, _TermiosError, ValueError)
_VID_SILICON_LABS = 0x10C4


class LinkError(TapkitError):
    """The terminal could not be reached or did not answer."""


class PortUnavailable(LinkError):
    """The port cannot be opened: missing, busy (another program has it) or not permitted."""


class NoAnswer(LinkError):
    """The port is open but no terminal answered (the firmware is stopped, or it is not tapkit)."""


class TerminalError(LinkError):
    """The terminal answered with an ERROR frame."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


def open_error(port, e):
    code = getattr(e, "errno", None)
    text = str(e)
    if code == errno.EACCES or "Permission denied" in text:
        return PortUnavailable(f"permission denied on {port}: add yourself to the dialout group")
    if code == errno.EBUSY or "exclusively lock" in text or "busy" in text.lower():
        return PortUnavailable(
            f"{port} is busy: close the other program using it (mpremote, screen, another tapkit)"
        )
    if code == errno.ENOENT or "No such file" in text:
        return PortUnavailable(
            f"no serial port {port}: is the terminal plugged in? (tapkit ports lists them)"
        )
    return LinkError(f"cannot open {port}: {text}")


def open_port(port, baud=115200, timeout=0.05):
    """Open a terminal's serial port (a device, a pty or a pyserial URL such as rfc2217://) the way
    mpremote does, so that opening it does not pulse the ESP32's EN line through the DevKitC's
    auto-reset circuit (DTR/RTS): on a host that asserts both together (Linux) pyserial's defaults
    are kept; where the CP210x driver sets them one after the other (Windows) both are cleared
    before the open and raised in the order that never pulls EN low. Exclusive where pyserial can
    lock. The usual trouble (busy, dialout, unplugged) becomes one LinkError line."""
    kw = {"exclusive": True} if not str(port).startswith(("socket:", "loop:", "rfc2217:")) else {}
    try:
        ser = serial.serial_for_url(port, baudrate=baud, timeout=timeout, do_not_open=True, **kw)
        if os.name == "nt" and _cp210x(port):
            ser.dtr = ser.rts = False
            ser.open()
            ser.dtr = True  # DTR first: IO0 low for a moment with EN high is harmless
            ser.rts = True
        else:
            ser.open()
    except (serial.SerialException, OSError) as e:
        raise open_error(port, e) from None
    return ser


def _cp210x(port):
    from serial.tools import list_ports

    found = list(list_ports.grep(port))
    return bool(found) and getattr(found[0], "vid", None) == _VID_SILICON_LABS


def lost(port, e):
    """The one line for a cable pulled (or a board gone) in the middle of an exchange."""
    why = getattr(e, "strerror", None) or (e.args[-1] if getattr(e, "args", None) else e)
    return LinkError(f"lost the terminal on {port}: {why} (cable unplugged or board reset?)")


class SerialLink:
    """A framed request/response link over a serial port (or any pyserial URL, e.g. a pty path).
    `ser`: an open pyserial port to use instead of opening `port` (flash shares one open port
    between the link and the raw REPL); it is closed with the link."""

    def __init__(self, port, baud=115200, timeout=2.0, retries=3, trace=None, ser=None):
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.trace = trace  # optional callable(direction, line) for --trace
        self.stats = {"sent": 0, "received": 0, "retries": 0, "ignored": 0}
        self._req_id = random.randint(1, 0xFFFE)
        self._buf = bytearray()
        self.key = None  # the terminal's journal key (keystore.terminal_key): controls are tagged
        self.nonce = None  # the terminal's, from its IDENTIFY answer (renewed by a SET_CLOCK)
        self._ser = ser if ser is not None else open_port(port, baud)

    # ---- plumbing ------------------------------------------------------------------------------

    def close(self):
        ser, self._ser = getattr(self, "_ser", None), None
        if ser is not None:
            try:
                ser.close()
            except IO_ERRORS:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next_id(self):
        self._req_id = self._req_id % 0xFFFF + 1  # 1..0xFFFF
        return self._req_id

    def _write(self, line):
        if len(line) > frames.MAX_REQUEST:  # the console budget (card_schema/frames.py)
            raise ValueError("request line of %d bytes: more than the console budget" % len(line))
        if self.trace:
            self.trace(">", line)
        try:
            self._ser.write(line)
            self._ser.flush()
        except IO_ERRORS as e:
            raise lost(self.port, e) from None
        self.stats["sent"] += 1

    def _read_line(self, deadline):
        """The next complete line (bytes, without the newline) before `deadline`, else None."""
        while True:
            i = self._buf.find(b"\n")
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                if len(line) > frames.MAX_LINE * 4:
                    continue
                return line
            if len(self._buf) > frames.MAX_LINE * 4:  # endless garbage without newlines
                del self._buf[:]
            if time.monotonic() >= deadline:
                return None
            try:
                n = self._ser.in_waiting
                chunk = self._ser.read(n if n else 1)
            except IO_ERRORS as e:
                raise lost(self.port, e) from None
            if chunk:
                self._buf += chunk

    def request(self, ftype, body=b"", timeout=None, retries=None):
        """Send a request; return the body of its response. Raises LinkError / TerminalError."""
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        if self._ser is None:
            raise LinkError(f"the link to {self.port} is closed")
        req_id = self._next_id()
        line = frames.encode(ftype, req_id, body)
        want = ftype | frames.RESPONSE
        for attempt in range(retries + 1):
            if attempt:
                self.stats["retries"] += 1
            self._write(line)
            deadline = time.monotonic() + timeout
            while True:
                raw = self._read_line(deadline)
                if raw is None:
                    break  # timed out: retransmit
                if self.trace:
                    self.trace("<", raw)
                try:
                    rtype, rid, rbody = frames_host.decode(raw)  # from the line's last "~"
                except frames.FrameError:
                    self.stats["ignored"] += 1
                    continue
                if rid != req_id or rtype not in (want, frames.ERROR):
                    self.stats["ignored"] += 1  # stale answer, our echo, someone else's frame
                    continue
                self.stats["received"] += 1
                if rtype == frames.ERROR:
                    code, msg = frames_host.parse_error(rbody)
                    raise TerminalError(
                        "terminal on {} refused {}: {} ({})".format(
                            self.port,
                            frames_host.REQUEST_NAMES.get(ftype, f"0x{ftype:02x}"),
                            msg,
                            frames_host.error_name(code),
                        ),
                        code,
                    )
                return rbody
        raise NoAnswer(
            f"no answer from the terminal on {self.port}: is the tapkit firmware running?"
        )

    # ---- requests ------------------------------------------------------------------------------

    def identify(self):
        body = self.request(frames.IDENTIFY)
        try:
            info = json.loads(bytes(body).decode())
        except ValueError:
            raise LinkError(
                f"terminal on {self.port} sent an unreadable IDENTIFY answer"
            ) from None
        if not isinstance(info, dict) or "terminal_id" not in info:
            raise LinkError(f"terminal on {self.port} sent an incomplete IDENTIFY answer")
        try:
            self.nonce = bytes.fromhex(info["nonce"]) if "nonce" in info else None
        except (TypeError, ValueError):
            self.nonce = None
        return info

    def control(self, ftype, body):
        """A control's body with its tag (card_schema.frames_host.TAG), when the link has the terminal's
        key and nonce; else as it is (the terminal then obeys only a small clock step)."""
        if self.key is None or self.nonce is None:
            return body
        return frames_host.control_body(self.key, self.nonce, ftype, body)

    def pull(self, from_seq, max_n=frames.MAX_RECORDS):
        """Up to max_n records (64-byte bytes) starting at from_seq; [] when there are none."""
        body = self.request(frames.PULL, frames_host.pull_body(from_seq, max_n))
        try:
            return frames_host.parse_records(body)
        except frames.FrameError as e:
            raise LinkError(f"terminal on {self.port} sent a bad RECORDS answer: {e}") from None

    def stream(self, from_seq, head, window=4, per=frames_host.BINARY_RECORDS):
        """The records from_seq..head, pulled with `window` PULLs in flight (binary RECORDS lines):
        a PullStream to iterate (lists of records, in order) and to ack() through while it runs.
        For a terminal whose IDENTIFY says proto >= frames_host.PROTO_BINARY."""
        return PullStream(self, from_seq, head, window, per)

    def ack(self, upto_seq):
        """Acknowledge records up to upto_seq (the terminal may reclaim them); returns acked_seq."""
        body = self.control(frames.ACK, frames_host.u32_body(upto_seq))
        return self._u32(self.request(frames.ACK, body))

    def set_clock(self, unix):
        """Set the terminal clock; returns the terminal's clock before the change."""
        body = self.request(
            frames.SET_CLOCK, self.control(frames.SET_CLOCK, frames_host.u32_body(int(unix)))
        )
        try:
            before, nonce = frames_host.parse_clock(body)
        except frames.FrameError as e:
            raise LinkError(f"terminal on {self.port} sent a bad answer: {e}") from None
        if nonce is not None:
            self.nonce = nonce  # what the next control covers
        return before

    def maintain(self, seconds):
        """Open the terminal's locked console for `seconds` (tagged: needs `key`); returns them."""
        if self.key is None or self.nonce is None:
            raise LinkError("unlocking the terminal's console needs its key (the keystore)")
        body = self.request(
            frames_host.MAINT,
            self.control(frames_host.MAINT, struct.pack("<H", min(int(seconds), 0xFFFF))),
        )
        if len(body) != 2 + 8:
            raise LinkError(f"terminal on {self.port} sent a bad MAINT answer")
        self.nonce = bytes(body[2:])
        return struct.unpack("<H", bytes(body[:2]))[0]

    def diag_log(self):
        return json.loads(bytes(self.request(frames.DIAG_LOG)).decode())

    def install(self, blob):
        """Send a signed config blob (card_schema/signed.py) in chunks; returns (kind, version) the
        terminal applied. Resumes a transfer the terminal already holds part of (it is asked first
        how much of this blob it has: INSTALL with offset INSTALL_QUERY and the blob's head); a lost
        answer to the last chunk is settled by asking the terminal's versions."""
        blob = bytes(blob)
        total = len(blob)
        try:  # how much of this very blob does the terminal hold (an interrupted install)?
            body = self.request(
                frames.INSTALL,
                self.control(
                    frames.INSTALL,
                    frames_host.install_body(
                        frames_host.INSTALL_QUERY, total, blob[: signed.HEADER]
                    ),
                ),
            )
            off = frames_host.parse_install(body)[0]
        except (TerminalError, frames.FrameError):  # firmware without the query: from the start
            off = 0
        if not 0 < off < total:
            off = 0
        while True:
            chunk = blob[off : off + frames_host.INSTALL_CHUNK]
            try:
                body = self.request(
                    frames.INSTALL,
                    self.control(frames.INSTALL, frames_host.install_body(off, total, chunk)),
                )
            except TerminalError:
                if off + len(chunk) < total:
                    raise
                # the retransmitted last chunk after the terminal applied it: did it?
                from card_schema import signed_host

                try:
                    kind, version = signed_host.peek(blob)
                    key = signed_host.version_key(kind)
                except ValueError:
                    key = None
                if key and self.identify().get(key) == version:
                    return kind, version
                raise
            try:
                have, kind, version = frames_host.parse_install(body)
            except frames.FrameError as e:
                raise LinkError(
                    f"terminal on {self.port} sent a bad INSTALL answer: {e}"
                ) from None
            if kind:
                return kind, version
            if have <= off and chunk:
                raise LinkError(f"terminal on {self.port} stopped taking the config at {have}")
            off = have

    def _u32(self, body):
        try:
            return frames_host.parse_u32(body)
        except frames.FrameError as e:
            raise LinkError(f"terminal on {self.port} sent a bad answer: {e}") from None


class PullStream:
    """Serial sync at the line's rate: while the terminal sends one RECORDS line the next PULLs are
    already in its console buffer, so the line never waits for a request (card_schema/frames_host.py
    "Binary RECORDS lines": ~97 % of the bytes are records). A window of 4 PULLs (22 bytes each) and
    an ACK (18) keep the host's bytes in flight far inside the ESP32's console budget: a request
    waits for answers rather than put more than frames.MAX_REQUEST unanswered bytes on the line.

        s = link.stream(seq, head)
        for recs in s:            # consecutive batches, in order
            store them, then s.ack(last seq stored)   # sent at once; answered within the stream
        s.acked                   # the terminal's acked_seq, from the last ACK answer

    A request whose answer does not come within the link's timeout is sent again (same req_id), at
    most link.retries times (then NoAnswer); answers come in order, late or repeated ones are
    ignored. An ERROR answer raises TerminalError as request() does."""

    def __init__(self, link, from_seq, head, window, per):
        self.link = link
        self.next = from_seq
        self.head = head
        self.window = window
        self.per = per
        self.pending = {}  # req_id -> [line, sent at, tries, result or None, kind]
        self.order = []  # req_ids of the PULLs, in seq order
        self.acks = []  # req_ids of ACKs in flight
        self.acked = None
        self.done = False
        self.max_in_flight = 0  # most request bytes the terminal had not answered (diagnostics)

    def _fits(self, line):
        """The line can go now: with the requests not yet answered it stays within the console
        budget (frames.MAX_REQUEST bytes in flight towards the terminal)."""
        return self._waiting() + len(line) <= frames.MAX_REQUEST

    def _waiting(self):
        return sum(len(p[0]) for p in self.pending.values() if p[3] is None)

    def _send(self, ftype, body, kind):
        link = self.link
        rid = link._next_id()
        line = frames.encode(ftype, rid, body)
        while not self._fits(line):  # wait for answers: the terminal's console would overflow
            self._read()
        link._write(line)
        self.pending[rid] = [line, time.monotonic(), 0, None, kind]
        self.max_in_flight = max(self.max_in_flight, self._waiting())
        return rid

    def ack(self, upto_seq):
        body = self.link.control(frames.ACK, frames_host.u32_body(upto_seq))
        self.acks.append(self._send(frames.ACK, body, "ack"))

    def __iter__(self):
        while True:
            while len(self.order) < self.window and self.next <= self.head and not self.done:
                n = min(self.per, self.head - self.next + 1)
                body = frames_host.pull_body(self.next, n | frames_host.PULL_BINARY)
                self.order.append(self._send(frames.PULL, body, "pull"))
                self.next += n
            if self.order and self.pending[self.order[0]][3] is not None:
                rid = self.order.pop(0)
                recs = self.pending.pop(rid)[3]
                if not recs:  # nothing from there: the journal's head moved back?
                    self.done = True
                    continue
                yield recs
                continue
            if not self.order and not self.acks:
                return
            self._read()

    def finish(self):
        """Wait for the answers to the ACKs in flight; returns the terminal's acked_seq."""
        while self.acks:
            self._read()
        return self.acked

    def _read(self):
        link = self.link
        waiting = [r for r in self.order + self.acks if self.pending[r][3] is None]
        oldest = min(self.pending[r][1] for r in waiting)
        raw = link._read_line(oldest + link.timeout)
        if raw is None:  # the oldest unanswered one timed out: send it again
            rid = min(waiting, key=lambda r: self.pending[r][1])
            p = self.pending[rid]
            if p[2] >= link.retries:
                raise NoAnswer(
                    f"no answer from the terminal on {link.port}: is the tapkit firmware running?"
                )
            p[2] += 1
            p[1] = time.monotonic()
            link.stats["retries"] += 1
            link._write(p[0])
            return
        if link.trace:
            link.trace("<", raw)
        try:
            rtype, rid, rbody = frames_host.decode(raw)
        except frames.FrameError:
            link.stats["ignored"] += 1
            return
        p = self.pending.get(rid)
        if p is None or p[3] is not None:
            link.stats["ignored"] += 1  # late, repeated, our echo or someone else's
            return
        link.stats["received"] += 1
        if rtype == frames.ERROR:
            code, msg = frames_host.parse_error(rbody)
            what = "PULL" if p[4] == "pull" else "ACK"
            raise TerminalError(
                f"terminal on {link.port} refused {what}: {msg} ({frames_host.error_name(code)})",
                code,
            )
        try:
            if p[4] == "pull" and rtype == frames_host.RECORDS:
                p[3] = frames_host.parse_records(rbody)
            elif p[4] == "ack" and rtype == frames_host.ACK_R:
                self.acked = frames_host.parse_u32(rbody)
                self.acks.remove(rid)
                del self.pending[rid]
            else:
                link.stats["ignored"] += 1
        except frames.FrameError as e:
            raise LinkError(f"terminal on {link.port} sent a bad answer: {e}") from None
