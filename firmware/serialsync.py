"""Serial sync, terminal side: answers the host's frames on the USB serial port (which is also the REPL).

The app's main loop owns the port: it feeds whatever bytes arrive to `Responder.feed` (or whole lines to
`handle_line`), and the responder writes one response line per valid request through `write`. Lines that
are not frames (REPL echo, a human typing, noise, torn lines) are dropped without an answer, so the host
retransmits; a valid request the terminal cannot serve gets an ERROR frame. Nothing here raises on bad
input: one garbled cable must never stop a validator.

    r = Responder(journal, {"terminal_id": 7, "fw": "0.1.0"}, clock, sys.stdout.buffer.write)
    r.feed(sys.stdin.buffer.read(n))      # or r.handle_line(line)

`journal`: `head_seq`, `acked_seq`, `capacity`, `unsynced`, `records(from_seq, max_n)` (yields 64-byte
records), `ack(upto_seq)`; optional `tail_seq`. `clock`: `time()`, `set(unix)`. `log`: optional callable
returning the newest diagnostics lines (served by DIAG_LOG).
"""

import json
import struct

from card_schema import frames

try:
    from micropython import const
except ImportError:  # CPython

    def _const(x):
        return x

    const = _const  # by assignment: mypy wants one signature for micropython.const


_BODY_MAX = const(1 + 64 * 11)  # count + frames.MAX_RECORDS records
_LOG_LINES = const(20)


class Responder:
    def __init__(self, journal, info, clock, write, log=None):
        self.journal = journal
        self.info = info
        self.clock = clock
        self.write = write
        self.log = log
        # one response buffer for RECORDS, reused: the biggest frame the terminal sends
        self._out = bytearray(frames.OVERHEAD + _BODY_MAX)
        # line assembly for feed(); an overlong line is skipped up to its newline
        self._line = bytearray(frames.MAX_LINE)
        self._n = 0
        self._skip = False
        self.requests = 0  # valid requests answered (diagnostics)
        self.dropped = 0  # lines that were not frames
        self._handlers = {
            frames.IDENTIFY: self._identify,
            frames.PULL: self._pull,
            frames.ACK: self._ack,
            frames.SET_CLOCK: self._set_clock,
            frames.DIAG_LOG: self._diag_log,
        }

    # ---- input ---------------------------------------------------------------------------------

    def feed(self, data):
        """Accept any chunk of bytes from the port; handle each complete line. Returns lines handled."""
        if not hasattr(data, "find"):  # a memoryview from readinto()
            data = bytes(data)
        handled = 0
        start = 0
        end = len(data)
        while start < end:
            i = data.find(b"\n", start)
            stop = end if i < 0 else i
            n = stop - start
            if not self._skip:
                if self._n + n > frames.MAX_LINE:
                    self._skip = True  # too long to be a frame: drop it up to the newline
                    self._n = 0
                else:
                    self._line[self._n : self._n + n] = data[start:stop]
                    self._n += n
            if i < 0:
                break
            if not self._skip and self._n:
                self.handle_line(memoryview(self._line)[0 : self._n])
                handled += 1
            self._skip = False
            self._n = 0
            start = i + 1
        return handled

    def handle_line(self, line):
        """Decode one line and answer it. Returns True when a response was written."""
        try:
            line = bytes(line)
            at = line.rfind(b"~")  # a prompt or a torn line may precede the frame
            if at < 0:
                self.dropped += 1
                return False
            ftype, req_id, body = frames.decode(line[at:])
        except (ValueError, TypeError):  # not a frame: ignore, the host retransmits
            self.dropped += 1
            return False
        if ftype & frames.RESPONSE:
            return False  # a response (our own echo, another terminal): never answer it
        handler = self._handlers.get(ftype)
        try:
            if handler is None:
                self._error(req_id, frames.ERR_UNKNOWN_TYPE, f"unknown request 0x{ftype:02x}")
            else:
                handler(req_id, body)
            self.requests += 1
            return True
        except frames.FrameError as e:
            return self._send_error(req_id, frames.ERR_BAD_REQUEST, e)
        except _RangeError as e:
            return self._send_error(req_id, frames.ERR_RANGE, e)
        except Exception as e:  # noqa: BLE001 - journal I/O and the like: tell the host, stay up
            return self._send_error(req_id, frames.ERR_INTERNAL, e)

    # ---- handlers ------------------------------------------------------------------------------

    def _identify(self, req_id, body):
        j = self.journal
        d = {}
        for k in self.info:
            d[k] = self.info[k]
        d["clock"] = int(self.clock.time())
        d["head_seq"] = j.head_seq
        d["acked_seq"] = j.acked_seq
        d["tail_seq"] = getattr(j, "tail_seq", j.acked_seq + 1)
        d["unsynced"] = j.unsynced
        d["capacity"] = j.capacity
        d["max_records"] = frames.MAX_RECORDS
        d["proto"] = frames.VERSION
        self._send(frames.IDENTIFY_R, req_id, json.dumps(d).encode())

    def _pull(self, req_id, body):
        from_seq, max_n = frames.parse_pull(body)
        if from_seq == 0:
            raise frames.FrameError("sequence numbers start at 1")
        max_n = min(max_n, frames.MAX_RECORDS)
        buf = self._out
        count = 0
        pos = frames.HEADER + 1
        if max_n and from_seq <= self.journal.head_seq:
            for rec in self.journal.records(from_seq, max_n):
                if count >= max_n:
                    break
                buf[pos : pos + 64] = rec
                pos += 64
                count += 1
        buf[frames.HEADER] = count
        self.write(frames.seal(buf, frames.RECORDS, req_id, 1 + count * 64))

    def _ack(self, req_id, body):
        upto = frames.parse_u32(body)
        j = self.journal
        if upto > j.head_seq:
            raise _RangeError(f"ack {upto} beyond head {j.head_seq}")
        if upto > j.acked_seq:
            j.ack(upto)
        self._send(frames.ACK_R, req_id, struct.pack("<I", j.acked_seq))

    def _set_clock(self, req_id, body):
        unix = frames.check_time(frames.parse_u32(body))
        old = int(self.clock.time())
        self.clock.set(unix)
        self._send(frames.SET_CLOCK_R, req_id, struct.pack("<I", old & 0xFFFFFFFF))

    def _diag_log(self, req_id, body):
        if self.log is None:
            self._error(req_id, frames.ERR_UNKNOWN_TYPE, "no diagnostics log")
            return
        lines = list(self.log())[-_LOG_LINES:]
        data = json.dumps(lines).encode()
        while lines and frames.line_length(frames.OVERHEAD + len(data)) > frames.MAX_LINE:
            lines.pop(0)  # keep the newest that fit in one line
            data = json.dumps(lines).encode()
        self._send(frames.DIAG_LOG_R, req_id, data)

    # ---- output --------------------------------------------------------------------------------

    def _send(self, ftype, req_id, body):
        if frames.line_length(frames.OVERHEAD + len(body)) > frames.MAX_LINE:
            raise ValueError("response too long")
        self.write(frames.encode(ftype, req_id, body))

    def _error(self, req_id, code, message):
        self.write(frames.encode(frames.ERROR, req_id, frames.error_body(code, message)))

    def _send_error(self, req_id, code, exc):
        try:
            self._error(req_id, code, str(exc) or type(exc).__name__)
            return True
        except Exception:  # noqa: BLE001 - the port itself failed: nothing more to do
            return False


class _RangeError(ValueError):
    pass
