"""MIFARE DESFire EV1 client: AES authentication, EV1 secure messaging and the tap-path commands.

This module is what a terminal runs (it is loaded into RAM on the board, so it carries only the tap
path); card_schema.desfire_admin.DESFireAdmin adds personalisation and inspection commands, the other
value operations, APDU tracing and the status / command names for the host.

One implementation for the terminal (MicroPython, PN532 native frames), the card office (PC/SC,
ISO 7816-4 wrapped APDUs) and the tests (the emulated card). It only needs a function that sends one
frame and returns the card's raw answer:

    df = DESFire(reader.transceive)            # wrapped: 90 CMD 00 00 Lc data 00 -> data 91 SW
    df = DESFire(pn532.exchange, wrapped=False)  # native:  CMD data -> SW data
    df.select_application(0x544B01)
    df.authenticate_aes(1, key)
    balance = df.get_value(2, MODE_ENC)

Secure messaging (EV1, after AES authentication; the card does the same on its side):
- every command updates the running IV: IV = CMAC(session, IV, cmd || header || data); MODE_MAC
  commands also carry its first 8 bytes; MODE_ENC commands instead send header in plain and
  E(session, IV, data || CRC32(cmd || header || data) || 00-padding), IV = last cipher block;
- every successful response carries CMAC(session, IV, data || status)[:8] (IV = that CMAC), or, when
  enciphered, E(session, IV, data || CRC32(data || status) || padding) (IV = last cipher block);
- any error status ends the authentication (the card forgets it too).
"""

import struct
from binascii import crc32

from card_schema import compat
from card_schema.compat import const
from card_schema.crypto import (
    ZERO16,
    cbc_decrypt,
    cbc_encrypt,
    cmac_iv,
    ev1_session_key,
    rotl,
)

MODE_PLAIN = const(0)
MODE_MAC = const(1)
MODE_ENC = const(3)

# Card status codes the terminal tells apart (all of them, with names: card_schema.desfire_admin)
APPLICATION_NOT_FOUND = const(0xA0)
BOUNDARY_ERROR = const(0xBE)
_OK = const(0x00)
_ADDITIONAL_FRAME = const(0xAF)
# Errors found by this side (no card status): negative so they never collide with a card status
_RESPONSE_INTEGRITY = const(-1)  # response MAC or CRC wrong, or the card failed to prove the key
_PROTOCOL_ERROR = const(-2)  # malformed or unexpected response

# Command codes of the tap path (all of them: card_schema.desfire_admin.CMD_*)
_CMD_AUTHENTICATE_AES = const(0xAA)
_CMD_SELECT_APPLICATION = const(0x5A)
_CMD_READ_DATA = const(0xBD)
_CMD_GET_VALUE = const(0x6C)
_CMD_DEBIT = const(0xDC)
_CMD_WRITE_RECORD = const(0x3B)
_CMD_READ_RECORDS = const(0xBB)
_CMD_COMMIT_TRANSACTION = const(0xC7)
_CMD_ADDITIONAL_FRAME = const(0xAF)


class CardError(Exception):
    """A DESFire command failed. `.status` is the card's status byte (e.g. 0xAE), the ISO status word
    for a non-DESFire answer (e.g. 0x6A82), or RESPONSE_INTEGRITY (-1) / PROTOCOL_ERROR (-2) for errors
    found by this side; `.command` is the command code, `.msg` what this side found (or None).

    On the terminal str(e) is terse ("status 9D in DC"); importing card_schema.desfire_admin gives
    the host the named form ("permission denied (0x9D) in Debit")."""

    def __init__(self, status, msg=None, command=None):
        self.status = status
        self.msg = msg
        self.command = command
        super().__init__("%s %X in %X" % (msg or "status", status, command or 0))


def _crc_ok(pt, n):
    # the DESFire CRC32 (JAMCRC) of pt[0:n] || status 00 is the 4 bytes at pt[n:]
    c = crc32(b"\x00", crc32(memoryview(pt)[0:n])) ^ 0xFFFFFFFF
    return struct.unpack_from("<I", pt, n)[0] == c & 0xFFFFFFFF


def _padding(pt, i):
    # pt[i:] is padding: empty, 00.., or 80 00..
    return i >= len(pt) or (pt[i] in (0, 0x80) and not any(pt[i + 1 :]))


def _file_hdr(file_no, offset, length):
    # file number, then two 24-bit little-endian fields (offset and length, or count)
    return bytes((file_no,)) + offset.to_bytes(3, "little") + length.to_bytes(3, "little")


class DESFire:
    """A DESFire EV1 card behind `transceive(frame) -> response` (one frame each way)."""

    def __init__(self, transceive, wrapped=True, random=None):
        self.transceive = transceive
        self.wrapped = wrapped
        self.random = random or compat.urandom  # random(n) -> n bytes (RndA); tests fix it
        self.apdus = 0  # frames exchanged (each command or AF frame and its answer count 1)
        self.session_key = None
        self.iv = None
        self.auth_key_no = None
        self._f = None if wrapped else bytearray(64)  # a native frame, reused (see _xfer)

    # ---- framing -------------------------------------------------------------------------------

    def _xfer(self, cmd, data):
        """One frame each way; returns (status, data)."""
        if self.wrapped:
            # 90 CMD 00 00 Lc data 00 (Le); without data: 90 CMD 00 00 00
            frame = bytes((0x90, cmd, 0, 0, len(data))) + data + (b"\x00" if data else b"")
        elif len(data) < 64:
            # native: the frame is a view of a reused buffer, valid until transceive returns (the
            # PN532 driver copies it into its own; the tap then allocates no frame)
            f = self._f  # type: bytearray  # type: ignore[assignment]
            f[0] = cmd
            f[1 : 1 + len(data)] = data
            frame = memoryview(f)[0 : 1 + len(data)]
        else:
            frame = bytes((cmd,)) + bytes(data)
        resp = self.transceive(frame)
        self.apdus += 1
        if self.wrapped:
            if len(resp) < 2 or resp[-2] != 0x91:
                self._drop()
                st = (resp[-2] << 8) | resp[-1] if len(resp) > 1 else _PROTOCOL_ERROR
                raise CardError(st, None, cmd)
            return resp[-1], bytes(resp[:-2])
        if not resp:
            self._drop()
            raise CardError(_PROTOCOL_ERROR, None, cmd)
        return resp[0], bytes(resp[1:])

    def _exchange(self, cmd, payload):
        """Send a command with chaining in both directions; returns (status, all response data)."""
        # data bytes per frame after the command byte: DESFire's 64-byte frame buffer, minus the
        # ISO 7816 wrapping (CLA INS P1 P2 Lc .. Le) when wrapped
        n = 55 if self.wrapped else 59
        st, out = self._xfer(cmd, payload if len(payload) <= n else payload[0:n])
        for pos in range(n, len(payload), n):
            if st != _ADDITIONAL_FRAME or out:
                break  # the card refused part way (or answered early): report its status
            st, out = self._xfer(_CMD_ADDITIONAL_FRAME, payload[pos : pos + n])
        if st == _ADDITIONAL_FRAME:
            parts = [out]
            for _ in range(4096):  # bounded: a card never sends more than its EEPROM
                st, more = self._xfer(_CMD_ADDITIONAL_FRAME, b"")
                parts.append(more)
                if st != _ADDITIONAL_FRAME:
                    break
            else:
                raise CardError(_PROTOCOL_ERROR, "chaining", cmd)
            out = b"".join(parts)
        return st, out

    # ---- secure messaging ----------------------------------------------------------------------

    def _drop(self):
        self.session_key = None
        self.iv = None
        self.auth_key_no = None

    def command(self, cmd, header=b"", data=b"", mode=MODE_PLAIN, resp_mode=None, resp_len=None):
        """Run one command with EV1 secure messaging when authenticated; return the response data.

        `mode` protects the command data, `resp_mode` the response (default: `mode`); `resp_len` is the
        expected plain length of an enciphered response (None: find the CRC).
        """
        if resp_mode is None:
            resp_mode = mode
        sk = self.session_key
        h = len(header)
        k = 1 + h + len(data)
        # cmd || header || data, with room for the 8-byte CMAC a MODE_MAC command carries: one
        # buffer for the CMAC input and the payload (the tap path allocates per command only this)
        plain = bytearray(k + 8)
        plain[0] = cmd
        plain[1 : 1 + h] = header
        plain[1 + h : k] = data
        mv = memoryview(plain)
        if sk is None:
            payload = mv[1:k]
        elif mode == MODE_ENC and data:
            d = len(data)
            msg = bytearray(d + 4 + (-(d + 4)) % 16)
            msg[0:d] = data
            struct.pack_into("<I", msg, d, (crc32(mv[0:k]) ^ 0xFFFFFFFF) & 0xFFFFFFFF)
            ct = cbc_encrypt(sk, self.iv, msg)
            self.iv = ct[-16:]
            payload = bytes(header) + ct
        else:
            mac = cmac_iv(sk, self.iv, plain, k)
            self.iv = mac
            if mode == MODE_MAC and data:
                for i in range(8):
                    plain[k + i] = mac[i]
                payload = mv[1 : k + 8]
            else:
                payload = mv[1:k]
        st, resp = self._exchange(cmd, payload)
        if st != _OK:
            self._drop()
            raise CardError(st, None, cmd)
        if sk is None:
            return resp
        return self._unwrap(cmd, resp, resp_mode, resp_len)

    def _unwrap(self, cmd, resp, resp_mode, resp_len):
        sk = self.session_key
        if resp_mode == MODE_ENC and resp:
            if len(resp) % 16:
                self._drop()
                raise CardError(_PROTOCOL_ERROR, "block size", cmd)
            pt = cbc_decrypt(sk, self.iv, resp)
            self.iv = resp[-16:]
            k = len(pt) - 4  # the last place the CRC can start
            # unknown length: try every place where the CRC is followed only by padding (00.. or
            # 80 00..); known length: the CRC is right after the data
            for n in range(k, max(k - 16, -1), -1) if resp_len is None else (resp_len,):
                if n <= k and _crc_ok(pt, n) and (resp_len or _padding(pt, n + 4)):
                    return pt[0:n]
            self._drop()
            raise CardError(_RESPONSE_INTEGRITY, "bad CRC", cmd)
        n = len(resp) - 8
        mac = cmac_iv(sk, self.iv, resp, max(n, 0), 0x00)  # CMAC(data || status), no copy
        self.iv = mac
        bad = n < 0
        for i in range(0 if bad else 8):
            if mac[i] != resp[n + i]:
                bad = True
        if bad:
            self._drop()
            raise CardError(_RESPONSE_INTEGRITY, "bad MAC", cmd)
        return resp[:n]

    # ---- authentication ------------------------------------------------------------------------

    def authenticate_aes(self, key_no, key):
        """EV1 AES mutual authentication (0xAA); on success the session key is set and IV = 0."""
        self._drop()
        key = bytes(key)
        cmd = _CMD_AUTHENTICATE_AES
        st, ek_b = self._xfer(cmd, bytes((key_no,)))
        if st != _ADDITIONAL_FRAME:
            raise CardError(st, None, cmd)
        if len(ek_b) != 16:
            raise CardError(_PROTOCOL_ERROR, "challenge", cmd)
        rnd_b = cbc_decrypt(key, ZERO16, ek_b)
        rnd_a = bytes(self.random(16))
        # the IV chains through the three messages (EV1 AES)
        ct = cbc_encrypt(key, ek_b, rnd_a + rotl(rnd_b))
        st, ek_a = self._xfer(_CMD_ADDITIONAL_FRAME, ct)
        if st != _OK:
            raise CardError(st, None, cmd)
        if len(ek_a) != 16 or cbc_decrypt(key, ct[16:32], ek_a) != rotl(rnd_a):
            raise CardError(_RESPONSE_INTEGRITY, "card key proof", cmd)
        self.session_key = ev1_session_key(rnd_a, rnd_b)
        self.iv = ZERO16
        self.auth_key_no = key_no

    # ---- commands ------------------------------------------------------------------------------

    def select_application(self, aid):
        """SelectApplication (0x5A); aid 0 = PICC level. Ends any authentication."""
        self._drop()
        self.command(_CMD_SELECT_APPLICATION, aid.to_bytes(3, "little"))

    def read_data(self, file_no, offset, length, mode=MODE_PLAIN):
        """ReadData (std/backup file); length 0 reads to the end of the file."""
        hdr = _file_hdr(file_no, offset, length)
        return self.command(_CMD_READ_DATA, hdr, b"", MODE_PLAIN, mode, length or None)

    def get_value(self, file_no, mode=MODE_PLAIN):
        r = self.command(_CMD_GET_VALUE, bytes((file_no,)), b"", MODE_PLAIN, mode, 4)
        if len(r) != 4:
            raise CardError(_PROTOCOL_ERROR, "value", _CMD_GET_VALUE)
        return struct.unpack("<i", r)[0]

    def debit(self, file_no, amount, mode=MODE_PLAIN, cmd=_CMD_DEBIT):
        """Debit (0xDC) `amount` from a value file; staged until CommitTransaction.

        `cmd`: DESFireAdmin runs Credit (0x0C) and LimitedCredit (0x1C) through here too.
        """
        if amount < 0:
            raise ValueError("amount must be >= 0")
        self.command(cmd, bytes((file_no,)), struct.pack("<i", amount), mode, MODE_PLAIN)

    def write_record(self, file_no, offset, data, mode=MODE_PLAIN):
        """WriteRecord: a new record (offset inside it); staged until CommitTransaction."""
        hdr = _file_hdr(file_no, offset, len(data))
        self.command(_CMD_WRITE_RECORD, hdr, data, mode, MODE_PLAIN)

    def read_records(self, file_no, offset, count, record_size, mode=MODE_PLAIN):
        """ReadRecords: `count` records (0 = all) starting `offset` records back from the newest.

        Returns the records as one bytes object, **newest first** (the card sends them oldest first;
        this reorders them), so `citizen.unpack_trip(r, 0)` is the newest record.
        """
        hdr = _file_hdr(file_no, offset, count)
        r = self.command(
            _CMD_READ_RECORDS, hdr, b"", MODE_PLAIN, mode, count * record_size or None
        )
        n = len(r)
        if n % record_size:
            raise CardError(_PROTOCOL_ERROR, "record size", _CMD_READ_RECORDS)
        if n <= record_size:
            return r  # one record (the tap's usual read): nothing to reorder
        return b"".join([r[i : i + record_size] for i in range(n - record_size, -1, -record_size)])

    def commit_transaction(self):
        self.command(_CMD_COMMIT_TRANSACTION)
