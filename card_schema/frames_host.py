"""Host side of the sync line protocol: body builders and parsers, names, derived sizes.

The terminal never imports this module (every name in card_schema/frames.py costs terminal RAM), so
what only the host and the tests need lives here, built on frames.py's one encoder and decoder.

    from card_schema import frames, frames_host
    line = frames.encode(frames.PULL, 7, frames_host.pull_body(1, 11))
    ftype, req_id, body = frames_host.decode(answer)     # base64 or binary lines (below)
    records = frames_host.parse_records(body)

Binary RECORDS lines. Base64 caps the records at 75 % of the line's byte rate; a host that sets
PULL_BINARY in a PULL's max (a terminal reporting "proto" >= 2 in IDENTIFY) gets the RECORDS answer
as `"~!" + escape(payload) + "\n"`: the same payload (ver, type, req_id, body, crc32), its bytes as
they are except 0x0A, 0x0D, "=" and "~", each sent as "=" and the byte xor 0x40 ("=J", "=M", "=}",
"=>"), so a line still ends at its only newline, starts at its last "~" (a base64 decoder refuses it:
"!" is no base64 character) and the CRC still decides what is a frame. Up to BINARY_RECORDS records a
line (at most 1,813 bytes; receivers of binary lines accept 4 x MAX_LINE). Only the terminal sends
them, so no control byte ever travels towards the REPL; the other way a record is ~66 bytes on the
wire against ~87 in base64 (about 97 % of the line's byte rate is records).
"""

import binascii
import struct

from card_schema import frames, taprecord
from card_schema.frames import FrameError

HEADER_FMT = "<BBH"  # the payload's head: ver, type, req_id (then the body, then crc32 u32)

# request and response bodies (struct formats)
PULL_FMT = "<IH"  # PULL: from_seq, max
U32_FMT = "<I"  # ACK upto, SET_CLOCK unix, and both answers
INSTALL_FMT = "<II"  # INSTALL: offset, total, then a chunk of the signed blob
INSTALL_QUERY = (
    0xFFFFFFFF  # INSTALL offset that asks how much of the blob (its head follows) is held
)
INSTALL_ANSWER_FMT = "<IBI"  # received, kind, version (kind 0 until the blob is applied)
PULL_BINARY = 0x8000  # PULL max flag: answer in a binary line (module doc)
BINARY_RECORDS = 14  # records a binary RECORDS line carries at most
PROTO_BINARY = 2  # IDENTIFY "proto" of a terminal that answers PULL_BINARY

# response types: request | RESPONSE, same req_id
IDENTIFY_R = frames.IDENTIFY | frames.RESPONSE
RECORDS = frames.PULL | frames.RESPONSE
ACK_R = frames.ACK | frames.RESPONSE
SET_CLOCK_R = frames.SET_CLOCK | frames.RESPONSE
DIAG_LOG_R = frames.DIAG_LOG | frames.RESPONSE
INSTALL_R = frames.INSTALL | frames.RESPONSE
DIAG_R = frames.DIAG | frames.RESPONSE

# request names for traces and error messages
REQUEST_NAMES = {
    frames.IDENTIFY: "IDENTIFY",
    frames.PULL: "PULL",
    frames.ACK: "ACK",
    frames.SET_CLOCK: "SET_CLOCK",
    frames.DIAG_LOG: "DIAG_LOG",
    frames.INSTALL: "INSTALL",
    frames.DIAG: "DIAG",
}

ERROR_NAMES = ("", "unknown request", "bad request", "out of range", "internal error")

TRAILER = frames.OVERHEAD - frames.HEADER  # crc32
RECORD_SIZE = taprecord.SIZE
MAX_PAYLOAD = (frames.MAX_LINE - 2) // 4 * 3


def line_length(payload_len):
    """Characters of the line carrying a payload of this length ("~" and "\\n" included)."""
    return 2 + 4 * ((payload_len + 2) // 3)


def u32_body(value):
    """ACK and SET_CLOCK requests, their responses: one u32."""
    return struct.pack(U32_FMT, value)


def parse_u32(body):
    return frames.unpack(U32_FMT, body)[0]


def pull_body(from_seq, max_n):
    """PULL request: from_seq u32, max u16."""
    return struct.pack(PULL_FMT, from_seq, max_n)


def records_body(records):
    """RECORDS response: count u8, then count x 64-byte records (the terminal builds it in place)."""
    n = len(records)
    if n > frames.MAX_RECORDS:
        raise FrameError("too many records for one frame")
    out = bytearray(1 + n * RECORD_SIZE)
    out[0] = n
    for i in range(n):
        r = records[i]
        if len(r) != RECORD_SIZE:
            raise FrameError("record size")
        out[1 + i * RECORD_SIZE : 1 + (i + 1) * RECORD_SIZE] = r
    return bytes(out)


def parse_records(body):
    """List of 64-byte records of a RECORDS body."""
    if not len(body):
        raise FrameError("empty RECORDS body")
    n = body[0]
    if len(body) != 1 + n * RECORD_SIZE:
        raise FrameError("RECORDS body length does not match its count")
    return [bytes(body[1 + i * RECORD_SIZE : 1 + (i + 1) * RECORD_SIZE]) for i in range(n)]


# Controls (ACK, SET_CLOCK, INSTALL) end with TAG bytes: cmac(journal key, nonce | type | body)[:8]
# over the nonce the terminal's IDENTIFY gave (firmware/serialsync.py); without them: ERROR ERR_AUTH
TAG = 8
ERR_AUTH = 5
# MAINT (tagged): seconds u16 -> the terminal's console takes Ctrl-C that long (the REPL for
# mpremote, `tapkit flash`), then locks itself again; the answer: seconds u16, the new nonce
MAINT = 0x07


# INSTALL request: offset u32, total u32, then a chunk of the signed blob
INSTALL_HEAD = struct.calcsize(INSTALL_FMT)
INSTALL_CHUNK = frames.MAX_REQUEST_BODY - INSTALL_HEAD - TAG  # fits the console budget, tag after


def control_tag(journal_key, nonce, ftype, body):
    """The tag that makes the terminal obey a control: cmac(journal key, nonce | type | body)[:8],
    the nonce from its IDENTIFY answer (8 bytes)."""
    from card_schema.crypto import cmac

    return cmac(journal_key, bytes(nonce) + bytes((ftype,)) + bytes(body))[:TAG]


def parse_clock(body):
    """(the clock before, the terminal's new nonce or None) of a SET_CLOCK answer."""
    if len(body) == 4 + 8:
        return frames.unpack(U32_FMT, body[:4])[0], bytes(body[4:])
    return frames.unpack(U32_FMT, body)[0], None


def control_body(journal_key, nonce, ftype, body):
    """`body` with its control tag (ACK, SET_CLOCK, INSTALL)."""
    return bytes(body) + control_tag(journal_key, nonce, ftype, body)


def install_body(offset, total, chunk):
    return struct.pack(INSTALL_FMT, offset, total) + bytes(chunk)


def parse_install(body):
    """INSTALL answer: (received, kind, version); kind 0 until the blob is complete and applied."""
    return frames.unpack(INSTALL_ANSWER_FMT, body)


def parse_error(body):
    """(code, message) of an ERROR body."""
    if not len(body):
        return 0, ""
    try:
        msg = bytes(body[1:]).decode()
    except UnicodeError:
        msg = repr(bytes(body[1:]))
    return body[0], msg


def error_name(code):
    return ERROR_NAMES[code] if 0 < code < len(ERROR_NAMES) else f"error {code}"


_ESCAPED = {0x0A, 0x0D, 0x3D, 0x7E}


def escape(payload):
    """The body of a binary line (the terminal's own writer is firmware/serialsync.py)."""
    out = bytearray()
    for c in bytes(payload):
        if c in _ESCAPED:
            out += bytes((0x3D, c ^ 0x40))
        else:
            out.append(c)
    return bytes(out)


def binary_line(ftype, req_id, body=b""):
    """A frame as a binary line (tests; what a terminal answers a PULL_BINARY with)."""
    payload = struct.pack(HEADER_FMT, frames.VERSION, ftype, req_id & 0xFFFF) + bytes(body)
    payload += struct.pack("<I", binascii.crc32(payload) & 0xFFFFFFFF)
    return b"~!" + escape(payload) + b"\n"


def decode(line):
    """frames.decode of a base64 line, or of a binary line (module doc): (type, req_id, body);
    FrameError for anything that is not a complete, intact frame."""
    line = bytes(line)
    i = line.rfind(b"~")
    if i < 0 or line[i + 1 : i + 2] != b"!":
        return frames.decode(line)
    n = len(line)
    while n and line[n - 1] in b"\r\n":
        n -= 1
    raw = line[i + 2 : n]
    parts = raw.split(b"=")
    out = bytearray(parts[0])
    for p in parts[1:]:
        if not p or (p[0] ^ 0x40) not in _ESCAPED:
            raise FrameError("not a frame")
        out.append(p[0] ^ 0x40)
        out += p[1:]
    k = len(out)
    if (
        k < frames.OVERHEAD
        or out[0] != frames.VERSION
        or struct.unpack_from("<I", out, k - 4)[0] != binascii.crc32(out[: k - 4]) & 0xFFFFFFFF
    ):
        raise FrameError("not a frame")
    ftype, req_id = struct.unpack_from("<BH", out, 1)
    return ftype, req_id, bytes(out[frames.HEADER : k - 4])
