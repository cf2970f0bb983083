"""Sync frames: the serial line protocol between a terminal and the host (both ends use this module).

The terminal's USB serial port is also its MicroPython REPL, so a frame is one ASCII line with no
control byte in it: Ctrl-C, Ctrl-D and friends keep reaching the REPL, and a human watching the port
with a terminal program sees tidy lines.

    line    = "~" + base64(payload) + "\\n"
    payload = ver(1)=1 | type(1) | req_id(2 LE) | body | crc32(4 LE, binascii.crc32 of the bytes before)

Anything else on the wire (REPL echo, prints, line noise, a torn line) is not a frame: `decode` raises
`FrameError` and callers drop the line. One exception to "ASCII": a host that asks for it (PULL_BINARY
in card_schema/frames_host.py) gets RECORDS answers as escaped binary lines ("~!" + payload), the
records at ~97 % of the line's byte rate; they travel only from the terminal to the host, so nothing
the REPL reads ever holds a control byte. Base64 is checked strictly (canonical encoding only) so both
interpreters accept exactly the same lines.

    line = encode(PULL, 7, struct.pack("<IH", 1, 11))     # b"~AQIHAAEAAAALAP....\\n"
    ftype, req_id, body = decode(line)
    from_seq, max_n = unpack("<IH", body)

This module holds only what both ends need (the terminal imports it, so every name here costs RAM).
Body formats, builders, name tables and the derived constants the host uses live in
card_schema/frames_host.py (the terminal copies the body formats as private consts, checked by
tests/firmware/test_const_owners.py).
"""

import binascii
import struct

from card_schema.compat import const

VERSION = const(1)

# requests (host -> terminal); the response type is request | RESPONSE, same req_id
IDENTIFY = const(0x01)
PULL = const(0x02)  # its response is RECORDS (0x82)
ACK = const(0x03)
SET_CLOCK = const(0x04)
DIAG_LOG = const(0x05)
INSTALL = const(
    0x06
)  # a chunk of a signed config blob (card_schema/signed.py): firmware/install.py
# diagnostics (firmware/diag.py, via the Responder's `extra`); body "" (all), "t" (no self-test), "w"
DIAG = const(0x10)
RESPONSE = const(0x80)
ERROR = const(0xFF)

# ERROR body: code u8 + utf-8 message (<= 200 bytes)
ERR_UNKNOWN_TYPE = const(1)  # the terminal does not implement this request
ERR_BAD_REQUEST = const(2)  # malformed body
ERR_RANGE = const(3)  # a sequence number the journal does not have (ack beyond head)
ERR_INTERNAL = const(4)  # the handler failed (journal I/O...)

HEADER = const(4)  # ver, type, req_id
_HEADER_FMT = const("<BBH")  # = card_schema.frames_host.HEADER_FMT
OVERHEAD = const(8)  # HEADER + crc32

# Longest line either side sends or accepts, "~" and "\n" included. Receivers drop longer lines.
MAX_LINE = const(1024)
# Records per RECORDS frame so the line stays under MAX_LINE:
# payload 8 + 1 + 11 * 64 = 713 bytes -> 4 * ceil(713 / 3) + 2 = 954 characters.
MAX_RECORDS = const(11)
# Longest body of one frame: its line fits MAX_LINE ((1024 - 2) // 4 * 3 = 765 payload bytes).
MAX_BODY = const(757)
# Longest *request* line the host sends ("~" and "\n" included): the ESP32 port's console input is a
# 260-byte ring buffer (259 usable, ports/esp32/mphalport.c) that only the main loop empties, and
# bytes beyond it are lost while the firmware is busy. So the host never has more than this many
# bytes in flight towards a terminal (one request, or several small ones: see docs/architecture.md
# "Console budget"); the terminal's answers (up to MAX_LINE) go the other way, which the host reads.
MAX_REQUEST = const(240)
# Longest request body: (240 - 2) // 4 * 3 = 177 payload bytes, less the frame's 8.
MAX_REQUEST_BODY = const(169)


class FrameError(ValueError):
    """Not a valid frame (callers ignore the line) or a malformed body."""


def seal(buf, ftype, req_id, body_len, write=None):
    """Finish a frame whose body is already at buf[HEADER:HEADER+body_len]; return the line bytes,
    or with `write` write the line through it in pieces of 128 characters and return None.

    Lets the terminal build big responses in one preallocated buffer (no body copy) and send them
    without one big allocation (a fragmented heap may have no 1 KB block left: 96-byte slices of a
    payload encode to base64 that joins up exactly). Raises ValueError (not FrameError: the request
    was fine) for a body longer than MAX_BODY."""
    if body_len > MAX_BODY:
        raise ValueError("frame too long")
    n = HEADER + body_len
    struct.pack_into(_HEADER_FMT, buf, 0, VERSION, ftype, req_id & 0xFFFF)
    mv = memoryview(buf)
    struct.pack_into("<I", buf, n, binascii.crc32(mv[0:n]) & 0xFFFFFFFF)
    # b2a_base64 takes any buffer on both interpreters; the stub says bytes (a copy would allocate)
    if write is None:
        return b"~" + binascii.b2a_base64(mv[0 : n + 4])  # type: ignore[arg-type]
    write(b"~")
    for i in range(0, n + 4, 96):
        write(binascii.b2a_base64(mv[i : min(i + 96, n + 4)], newline=False))  # type: ignore[arg-type]
    write(b"\n")
    return None


def encode(ftype, req_id, body=b""):
    """One frame as a line: b"~" + base64(payload) + b"\\n"."""
    n = len(body)
    buf = bytearray(OVERHEAD + n)
    buf[HEADER : HEADER + n] = body
    return seal(buf, ftype, req_id, n)


def decode(line):
    """The frame of a received line (bytes-like, with or without its line ending): (type, req_id, body).

    The frame starts at the line's last "~": a REPL prompt or a torn line may precede it ("~" is not a
    base64 character). Raises FrameError for anything that is not a complete, intact version-1 frame."""
    line = bytes(line)
    i = line.rfind(b"~")
    n = len(line)
    while n and line[n - 1] in b"\r\n":
        n -= 1
    text = line[i + 1 : n]
    try:
        payload = binascii.a2b_base64(text)
    except ValueError:  # binascii.Error on CPython is a ValueError
        payload = b""
    n = len(payload)
    # Both decoders skip characters outside the alphabet: only the canonical encoding is a frame.
    if (
        i < 0
        or len(text) >= MAX_LINE
        or n < OVERHEAD
        or binascii.b2a_base64(payload)[:-1] != text
        or payload[0] != VERSION
        or struct.unpack_from("<I", payload, n - 4)[0]
        != binascii.crc32(memoryview(payload)[0 : n - 4]) & 0xFFFFFFFF
    ):
        raise FrameError("not a frame")
    ftype, req_id = struct.unpack_from("<BH", payload, 1)
    return ftype, req_id, payload[HEADER : n - 4]


def unpack(fmt, body):
    """struct.unpack of a body that must be exactly the format's size (else FrameError)."""
    if len(body) != struct.calcsize(fmt):
        raise FrameError("bad body length")
    return struct.unpack(fmt, body)
