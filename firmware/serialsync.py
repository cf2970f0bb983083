"""Serial sync, terminal side: answers the host's frames on the USB serial port (which is also the REPL).

The app's main loop owns the port: it hands each complete line (hal.Console.poll_line assembles them
and drops overlong ones) to `Responder.handle_line`, and the responder writes one response line per
valid request through `write`. Lines that are not frames (REPL echo, a human typing, noise, torn lines)
are dropped without an answer, so the host retransmits; a valid request the terminal cannot serve gets
an ERROR frame. Nothing here raises on bad input: one garbled cable must never stop a validator.

    r = Responder(journal, {"terminal_id": 7, "fw": "0.1.0"}, clock, sys.stdout.buffer.write)
    r.handle_line(line)

`extra(type, body)`: optional handler for request types this module does not know (other firmware
modules add commands this way, e.g. diagnostics): returns (response_type, response_body) or None
("unknown request"); an exception it raises becomes an ERROR frame like any handler's.
`config_key`: the terminal's config key (keys.json "config"): INSTALL verifies signed blobs with it
(firmware/install.py, imported only when an INSTALL arrives).

Controls are authenticated: ACK, SET_CLOCK and INSTALL end with a tag, cmac(journal key, nonce | type
| body)[:8] (card_schema.frames_host.TAG), over the nonce this terminal's IDENTIFY gave. Without it (or
with a wrong one: forged, altered, replayed from another boot) nothing changes, the host gets ERROR
ERR_AUTH and the alarm (auth[4], app.py: log_error) logs it. An untagged SET_CLOCK may still move the clock, by
_FREE_STEP s in all per boot (a drift fix from an old host), never days. A tagged SET_CLOCK renews
the nonce (its answer carries the new one), so a recorded one replayed later is refused; the same
one again at once (its answer lost) is answered again and changes nothing.

`journal`: `head_seq`, `acked_seq`, `capacity`, `unsynced`, `read(from_seq, buf)` (copies the
consecutive 64-byte records from the first with seq >= from_seq into buf, returns how many),
`ack(upto_seq)`; optional `tail_seq`. `clock`: `time()`, `set(unix)`. `log`: optional callable
returning the newest diagnostics lines (served by DIAG_LOG).

RAM: one module-level class with two methods; the request dispatch is one if-chain (a handler table
would cost a function object per request type plus a dict of bound methods per Responder).
"""

import binascii
import json
import struct

from card_schema import frames, taprecord
from card_schema.compat import const, urandom
from card_schema.crypto import cmac

_PULL_FMT = const("<IH")  # = card_schema.frames_host.PULL_FMT
_PULL_BINARY = const(0x8000)  # = card_schema.frames_host.PULL_BINARY
_BINARY_RECORDS = const(14)  # = card_schema.frames_host.BINARY_RECORDS
_PROTO_BINARY = const(2)  # = card_schema.frames_host.PROTO_BINARY
_U32_FMT = const("<I")  # = card_schema.frames_host.U32_FMT

_ERR_AUTH = const(5)  # = card_schema.frames_host.ERR_AUTH
_MAINT = const(0x07)  # = card_schema.frames_host.MAINT
_TAG = const(8)  # = card_schema.frames_host.TAG
_MIN_TIME = const(1577836800)  # 2020-01-01: SET_CLOCK refuses anything older (an unset host clock)
_LOG_LINES = const(20)  # newest diagnostics lines offered to DIAG_LOG


class Responder:
    def __init__(
        self, journal, info, clock, write, log=None, extra=None, config_key=None, auth=None
    ):
        self.journal = journal
        self.extra = extra
        self.config_key = config_key
        self.info = info
        self.clock = clock
        self.write = write
        self.log = log
        # one response buffer for RECORDS, reused: the biggest frame the terminal sends
        self._out = bytearray(frames.OVERHEAD + 1 + taprecord.SIZE * _BINARY_RECORDS)
        self.requests = 0  # requests answered, ERROR answers included (diagnostics)
        self.dropped = 0  # lines that were not frames
        # the controls' state (_tagged below, firmware/maint.py), one list (an attribute more would grow the
        # instance's map, heap a Wi-Fi board does not have): the nonce a control's tag covers
        # (fresh per boot and per clock set), the untagged clock seconds left this boot, the last
        # tagged SET_CLOCK (tag, answer), the controls refused, alarm(where, exc) that logs them,
        # the seconds of maintenance an authenticated MAINT asked for (app.py opens the console).
        # `auth`: the owner's list (app.py: the Terminal's, which outlives a forgotten responder)
        self.auth = auth or [urandom(8), 300, None, 0, None, None]

    def handle_line(self, line):
        """Decode one line and answer it. Returns True when a response was written. Never raises."""
        try:
            ftype, req_id, body = frames.decode(line)
        except (ValueError, TypeError):  # not a frame: ignore, the host retransmits
            self.dropped += 1
            return False
        if ftype & frames.RESPONSE:
            return False  # a response (our own echo, another terminal): never answer it
        j = self.journal
        rtype = ftype | frames.RESPONSE
        code = 0  # ERROR code of a refusal raised below; 0: decided by the exception's type
        refused = self.auth[3]
        try:
            if ftype == frames.IDENTIFY:
                d = dict(self.info)
                # 0: the clock was not set since power-up (hal.Clock ok): set it, whatever it says
                d["clock"] = int(self.clock.time()) if self.clock.ok else 0
                d["head_seq"] = j.head_seq
                d["acked_seq"] = j.acked_seq
                d["tail_seq"] = getattr(j, "tail_seq", j.acked_seq + 1)
                d["unsynced"] = j.unsynced
                d["capacity"] = j.capacity
                d["max_records"] = frames.MAX_RECORDS
                d["proto"] = _PROTO_BINARY  # version-1 frames, binary RECORDS lines too
                d["nonce"] = binascii.hexlify(self.auth[0]).decode()  # for the controls' tags
                if self.config_key and "fares_ver" not in self.info:
                    _install().versions(self.info)  # once: INSTALL keeps them current
                    _unload()
                    d.update(self.info)
                body = json.dumps(d).encode()
            elif ftype == frames.PULL:
                from_seq, max_n = frames.unpack(_PULL_FMT, body)
                if not from_seq:
                    raise frames.FrameError("sequence numbers start at 1")
                binary = max_n & _PULL_BINARY
                max_n = min(max_n & 0x7FFF, _BINARY_RECORDS if binary else frames.MAX_RECORDS)
                buf = self._out
                pos = frames.HEADER + 1
                # straight from flash into the frame buffer: a PULL allocates no record
                count = j.read(from_seq, memoryview(buf)[pos : pos + max_n * taprecord.SIZE])
                buf[frames.HEADER] = count
                body = line = None  # built in place, written in pieces: no big allocation
                n = 1 + count * taprecord.SIZE
                if binary:  # card_schema/frames_host.py "Binary RECORDS lines"
                    n += frames.HEADER
                    struct.pack_into("<BBH", buf, 0, frames.VERSION, rtype, req_id & 0xFFFF)
                    mv = memoryview(buf)
                    struct.pack_into("<I", buf, n, binascii.crc32(mv[0:n]) & 0xFFFFFFFF)
                    w = self.write
                    w(b"~!")
                    esc = bytearray(b"==")
                    a = 0
                    for i in range(n + 4):
                        c = buf[i]
                        if c == 10 or c == 13 or c == 61 or c == 126:
                            w(mv[a:i])
                            esc[1] = c ^ 64
                            w(esc)
                            a = i + 1
                    w(mv[a : n + 4])
                    w(b"\n")
                else:
                    frames.seal(buf, rtype, req_id, n, self.write)
            elif ftype == frames.ACK:
                upto = frames.unpack(_U32_FMT, _tagged(self, ftype, body))[0]
                if upto > j.head_seq:
                    code = frames.ERR_RANGE
                    raise ValueError(f"ack {upto} beyond head {j.head_seq}")
                if upto > j.acked_seq:
                    j.ack(upto)  # an ACK at or below acked_seq changes nothing
                body = struct.pack(_U32_FMT, j.acked_seq)
            elif ftype == frames.SET_CLOCK:
                from firmware import maint  # rare: forgotten again below

                body = maint.set_clock(self, body, _tagged)
            elif ftype == _MAINT:  # maintenance: the REPL for a while (firmware/maint.py)
                from firmware import maint

                body = maint.maint(self, body, _tagged)
            elif ftype == frames.DIAG_LOG and self.log:
                lines = list(self.log())[-_LOG_LINES:]
                body = json.dumps(lines).encode()
                while lines and len(body) > frames.MAX_BODY:
                    lines.pop(0)  # keep the newest that fit in one line
                    body = json.dumps(lines).encode()
            elif ftype == frames.INSTALL and self.config_key:
                b = _tagged(self, ftype, body)
                try:
                    body = _install().chunk(self.config_key, b, self.info)
                finally:
                    _unload()
            else:
                r = self.extra(ftype, body) if self.extra else None
                if r is None:
                    code = frames.ERR_UNKNOWN_TYPE
                    raise ValueError(f"unknown request 0x{ftype:02x}")
                rtype, body = r
            if body is not None:
                line = frames.encode(rtype, req_id, body)
            if line is not None:
                self.write(line)
        except Exception as e:  # noqa: BLE001 - bad body, journal I/O...: tell the host, stay up
            st = self.auth
            if st[3] != refused:  # a control without its tag (_tagged): nothing was done
                code = _ERR_AUTH
                if st[4]:
                    st[4]("usb control 0x%02x" % ftype, e)
            if not code:
                code = frames.ERR_BAD_REQUEST
                if not isinstance(e, frames.FrameError):
                    code = frames.ERR_INTERNAL
            try:
                msg = (str(e) or type(e).__name__).encode()[:200]
                self.write(frames.encode(frames.ERROR, req_id, bytes((code,)) + msg))
            except Exception:  # noqa: BLE001 - the port itself failed: nothing more to do
                return False
        self.requests += 1
        if (ftype == frames.SET_CLOCK or ftype == _MAINT) and self.auth[5] is None:
            import firmware

            firmware.forget("maint")  # its code leaves the heap until the next one
        return True


def _install():
    import firmware

    return firmware.load("install")  # rare: its code stays out of the heap until needed


def _unload():
    """Forget firmware.install (and the store it writes with) again so the GC can reclaim their code
    (a validator installs rarely)."""
    import firmware

    firmware.forget("install", "store")


# ---- the controls' tags (ACK, SET_CLOCK, INSTALL, MAINT) ------------------------------------------
def _tagged(r, ftype, body):
    """The body without its tag when it carries the terminal's tag; else the refusal is counted
    (auth[3]: handle_line answers ERR_AUTH and logs it) and ValueError raised."""
    k = len(body) - 8
    if k > 0:
        mv = memoryview(body)
        if cmac(r.journal.key, r.auth[0] + bytes((ftype,)) + mv[:k])[:8] == mv[k:]:
            return mv[:k]
    r.auth[3] += 1
    raise ValueError("control 0x%02x without its tag (forged, altered or replayed)" % ftype)
