"""MIFARE DESFire EV1 client: AES authentication, EV1 secure messaging and the transaction commands.

This module is what a terminal runs (it is loaded into RAM on the board, so it carries only the tap
path); card_schema.desfire_admin.DESFireAdmin adds personalisation and inspection commands for the host.

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

from card_schema import compat
from card_schema.crypto import (
    ZERO16,
    cbc_decrypt,
    cbc_encrypt,
    cmac_iv,
    crc32_bytes,
    ev1_session_key,
    rotl,
)

MODE_PLAIN = 0
MODE_MAC = 1
MODE_ENC = 3

# Status codes (the card's answer byte; ISO wrapped: SW2 after SW1 = 0x91)
OK = 0x00
NO_CHANGES = 0x0C
OUT_OF_EEPROM = 0x0E
ILLEGAL_COMMAND = 0x1C
INTEGRITY_ERROR = 0x1E
NO_SUCH_KEY = 0x40
LENGTH_ERROR = 0x7E
PERMISSION_DENIED = 0x9D
PARAMETER_ERROR = 0x9E
APPLICATION_NOT_FOUND = 0xA0
AUTHENTICATION_ERROR = 0xAE
ADDITIONAL_FRAME = 0xAF
BOUNDARY_ERROR = 0xBE
PICC_INTEGRITY_ERROR = 0xC1
COMMAND_ABORTED = 0xCA
PICC_DISABLED = 0xCD
COUNT_ERROR = 0xCE
DUPLICATE_ERROR = 0xDE
EEPROM_ERROR = 0xEE
FILE_NOT_FOUND = 0xF0
FILE_INTEGRITY_ERROR = 0xF1

# Errors found by this side (no card status): negative so they never collide with a card status
RESPONSE_INTEGRITY = -1  # response MAC or CRC wrong, or the card failed to prove the key
PROTOCOL_ERROR = -2  # malformed or unexpected response

STATUS_NAMES = {
    0x00: "OK",
    0x0C: "no changes",
    0x0E: "out of EEPROM",
    0x1C: "illegal command",
    0x1E: "integrity error",
    0x40: "no such key",
    0x7E: "length error",
    0x9D: "permission denied",
    0x9E: "parameter error",
    0xA0: "application not found",
    0xAE: "authentication error",
    0xAF: "additional frame",
    0xBE: "boundary error",
    0xC1: "PICC integrity error",
    0xCA: "command aborted",
    0xCD: "PICC disabled",
    0xCE: "count error",
    0xDE: "duplicate error",
    0xEE: "EEPROM error",
    0xF0: "file not found",
    0xF1: "file integrity error",
    -1: "integrity",
    -2: "protocol error",
}

# Command codes
CMD_AUTHENTICATE_AES = 0xAA
CMD_SELECT_APPLICATION = 0x5A
CMD_READ_DATA = 0xBD
CMD_WRITE_DATA = 0x3D
CMD_GET_VALUE = 0x6C
CMD_CREDIT = 0x0C
CMD_DEBIT = 0xDC
CMD_LIMITED_CREDIT = 0x1C
CMD_WRITE_RECORD = 0x3B
CMD_READ_RECORDS = 0xBB
CMD_COMMIT_TRANSACTION = 0xC7
CMD_ABORT_TRANSACTION = 0xA7
CMD_ADDITIONAL_FRAME = 0xAF

# Names for traces and error messages; card_schema.desfire_admin adds the personalisation ones.
COMMAND_NAMES = {
    0xAA: "AuthenticateAES",
    0x5A: "SelectApplication",
    0xBD: "ReadData",
    0x3D: "WriteData",
    0x6C: "GetValue",
    0x0C: "Credit",
    0xDC: "Debit",
    0x1C: "LimitedCredit",
    0x3B: "WriteRecord",
    0xBB: "ReadRecords",
    0xC7: "CommitTransaction",
    0xA7: "AbortTransaction",
    0xAF: "AdditionalFrame",
}


def status_name(status):
    return STATUS_NAMES.get(status, "unknown status")


class CardError(Exception):
    """A DESFire command failed. `.status` is the card's status byte (e.g. 0xAE), the ISO status word
    for a non-DESFire answer (e.g. 0x6A82), or RESPONSE_INTEGRITY / PROTOCOL_ERROR for errors found
    by this side. str(e) is one line: "authentication error (0xAE) in Debit"."""

    def __init__(self, status, msg=None, command=None):
        if isinstance(status, str):  # CardError("integrity")
            msg = status
            status = RESPONSE_INTEGRITY if status.startswith("integrity") else PROTOCOL_ERROR
        self.status = status
        self.command = command
        if msg is None:
            if status is not None and status > 0xFF:
                msg = f"card answered ISO status {status:04X}"
            elif status is not None and status >= 0:
                msg = f"{status_name(status)} (0x{status:02X})"
            else:
                msg = status_name(status)
        if command is not None:
            msg = "{} in {}".format(msg, COMMAND_NAMES.get(command, f"command 0x{command:02X}"))
        super().__init__(msg)


def _u24(n):
    return struct.pack("<I", n)[0:3]


class DESFire:
    """A DESFire EV1 card behind `transceive(frame) -> response` (one frame each way)."""

    def __init__(self, transceive, wrapped=True, trace=None, random=None):
        self.transceive = transceive
        self.wrapped = wrapped
        self.trace = trace
        self.random = random or compat.urandom  # random(n) -> n bytes (RndA); tests fix it
        self.apdus = 0  # frames exchanged (each command or AF frame and its answer count 1)
        # data bytes per frame after the command byte: DESFire's 64-byte frame buffer, minus the
        # ISO 7816 wrapping (CLA INS P1 P2 Lc .. Le) when wrapped
        self.max_frame = 55 if wrapped else 59
        self.session_key = None
        self.iv = None
        self.auth_key_no = None

    # ---- framing -------------------------------------------------------------------------------

    def _xfer(self, cmd, data, name=None):
        """One frame each way; returns (status, data)."""
        if self.wrapped:
            if data:
                frame = bytes((0x90, cmd, 0, 0, len(data))) + bytes(data) + b"\x00"
            else:
                frame = bytes((0x90, cmd, 0, 0, 0))
        else:
            frame = bytes((cmd,)) + bytes(data)
        if name is None:
            name = COMMAND_NAMES.get(cmd, f"0x{cmd:02X}")
        if self.trace:
            self.trace(">", frame, name)
        resp = self.transceive(frame)
        self.apdus += 1
        if self.trace:
            self.trace("<", bytes(resp), name)
        if self.wrapped:
            if len(resp) < 2:
                self._drop()
                raise CardError(PROTOCOL_ERROR, "short response", cmd)
            if resp[-2] != 0x91:
                self._drop()
                raise CardError((resp[-2] << 8) | resp[-1], None, cmd)
            return resp[-1], bytes(resp[:-2])
        if len(resp) < 1:
            self._drop()
            raise CardError(PROTOCOL_ERROR, "empty response", cmd)
        return resp[0], bytes(resp[1:])

    def _exchange(self, cmd, payload):
        """Send a command with chaining in both directions; returns (status, all response data)."""
        n = self.max_frame
        st, out = self._xfer(cmd, payload[0:n])
        pos = n
        while pos < len(payload):
            if st != ADDITIONAL_FRAME or out:
                break  # the card refused part way (or answered early): report its status
            st, out = self._xfer(CMD_ADDITIONAL_FRAME, payload[pos : pos + n], None)
            pos += n
        if st == ADDITIONAL_FRAME:
            parts = [out]
            for _ in range(4096):  # bounded: a card never sends more than its EEPROM
                st, more = self._xfer(CMD_ADDITIONAL_FRAME, b"")
                parts.append(more)
                if st != ADDITIONAL_FRAME:
                    break
            else:
                raise CardError(PROTOCOL_ERROR, "endless response chaining", cmd)
            out = b"".join(parts)
        return st, out

    # ---- secure messaging ----------------------------------------------------------------------

    def _drop(self):
        self.session_key = None
        self.iv = None
        self.auth_key_no = None

    @property
    def authenticated(self):
        return self.session_key is not None

    def command(self, cmd, header=b"", data=b"", mode=MODE_PLAIN, resp_mode=None, resp_len=None):
        """Run one command with EV1 secure messaging when authenticated; return the response data.

        `mode` protects the command data, `resp_mode` the response (default: `mode`); `resp_len` is the
        expected plain length of an enciphered response (None: find the CRC).
        """
        if resp_mode is None:
            resp_mode = mode
        sk = self.session_key
        plain = bytes((cmd,)) + bytes(header) + bytes(data)
        if sk is None:
            payload = plain[1:]
        elif mode == MODE_ENC and data:
            msg = bytes(data) + crc32_bytes(plain)
            if len(msg) % 16:
                msg += bytes(16 - len(msg) % 16)
            ct = cbc_encrypt(sk, self.iv, msg)
            self.iv = ct[-16:]
            payload = bytes(header) + ct
        else:
            mac = cmac_iv(sk, self.iv, plain)
            self.iv = mac
            payload = plain[1:]
            if mode == MODE_MAC and data:
                payload += mac[0:8]
        st, resp = self._exchange(cmd, payload)
        if st != OK:
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
                raise CardError(PROTOCOL_ERROR, "enciphered response not a block multiple", cmd)
            pt = cbc_decrypt(sk, self.iv, resp)
            self.iv = resp[-16:]
            if resp_len is not None:
                if resp_len + 4 <= len(pt) and self._crc_at(pt, resp_len):
                    return pt[0:resp_len]
            else:
                # unknown length: the CRC is followed only by padding (00.. or 80 00..)
                for n in range(len(pt) - 4, len(pt) - 20, -1):
                    if n < 0:
                        break
                    if self._crc_at(pt, n) and self._padding_ok(pt, n + 4):
                        return pt[0:n]
            self._drop()
            raise CardError(RESPONSE_INTEGRITY, "integrity: response CRC mismatch", cmd)
        if len(resp) < 8:
            self._drop()
            raise CardError(RESPONSE_INTEGRITY, "integrity: response MAC missing", cmd)
        data = resp[:-8]
        mac = cmac_iv(sk, self.iv, data + b"\x00")
        self.iv = mac
        if mac[0:8] != resp[-8:]:
            self._drop()
            raise CardError(RESPONSE_INTEGRITY, "integrity: response MAC mismatch", cmd)
        return data

    @staticmethod
    def _crc_at(pt, n):
        return crc32_bytes(pt[0:n] + b"\x00") == pt[n : n + 4]

    @staticmethod
    def _padding_ok(pt, start):
        for i in range(start, len(pt)):
            b = pt[i]
            if b != 0 and not (b == 0x80 and i == start):
                return False
        return True

    # ---- authentication and keys ---------------------------------------------------------------

    def authenticate_aes(self, key_no, key):
        """EV1 AES mutual authentication (0xAA); on success the session key is set and IV = 0."""
        self._drop()
        key = bytes(key)
        st, ek_b = self._xfer(CMD_AUTHENTICATE_AES, bytes((key_no,)))
        if st != ADDITIONAL_FRAME:
            raise CardError(st, None, CMD_AUTHENTICATE_AES)
        if len(ek_b) != 16:
            raise CardError(PROTOCOL_ERROR, "bad authentication challenge", CMD_AUTHENTICATE_AES)
        rnd_b = cbc_decrypt(key, ZERO16, ek_b)
        rnd_a = bytes(self.random(16))
        # the IV chains through the three messages (EV1 AES)
        ct = cbc_encrypt(key, ek_b, rnd_a + rotl(rnd_b))
        st, ek_a = self._xfer(CMD_ADDITIONAL_FRAME, ct, "AuthenticateAES")
        if st != OK:
            raise CardError(st, None, CMD_AUTHENTICATE_AES)
        if len(ek_a) != 16 or cbc_decrypt(key, ct[16:32], ek_a) != rotl(rnd_a):
            raise CardError(
                RESPONSE_INTEGRITY, "integrity: card failed to prove the key", CMD_AUTHENTICATE_AES
            )
        self.session_key = ev1_session_key(rnd_a, rnd_b)
        self.iv = ZERO16
        self.auth_key_no = key_no

    # ---- PICC level ----------------------------------------------------------------------------

    def select_application(self, aid):
        """SelectApplication (0x5A); aid 0 = PICC level. Ends any authentication."""
        self._drop()
        self.command(CMD_SELECT_APPLICATION, _u24(aid))

    # ---- data ----------------------------------------------------------------------------------

    def read_data(self, file_no, offset, length, mode=MODE_PLAIN):
        """ReadData (std/backup file); length 0 reads to the end of the file."""
        hdr = bytes((file_no,)) + _u24(offset) + _u24(length)
        return self.command(CMD_READ_DATA, hdr, b"", MODE_PLAIN, mode, length if length else None)

    def write_data(self, file_no, offset, data, mode=MODE_PLAIN):
        """WriteData; on a backup file it takes effect at CommitTransaction."""
        hdr = bytes((file_no,)) + _u24(offset) + _u24(len(data))
        self.command(CMD_WRITE_DATA, hdr, data, mode, MODE_PLAIN)

    def get_value(self, file_no, mode=MODE_PLAIN):
        r = self.command(CMD_GET_VALUE, bytes((file_no,)), b"", MODE_PLAIN, mode, 4)
        if len(r) != 4:
            raise CardError(PROTOCOL_ERROR, "bad value length", CMD_GET_VALUE)
        return struct.unpack("<i", r)[0]

    def _value_op(self, cmd, file_no, amount, mode):
        if amount < 0:
            raise ValueError("amount must be >= 0")
        self.command(cmd, bytes((file_no,)), struct.pack("<i", amount), mode, MODE_PLAIN)

    def credit(self, file_no, amount, mode=MODE_PLAIN):
        self._value_op(CMD_CREDIT, file_no, amount, mode)

    def debit(self, file_no, amount, mode=MODE_PLAIN):
        self._value_op(CMD_DEBIT, file_no, amount, mode)

    def limited_credit(self, file_no, amount, mode=MODE_PLAIN):
        self._value_op(CMD_LIMITED_CREDIT, file_no, amount, mode)

    def write_record(self, file_no, offset, data, mode=MODE_PLAIN):
        """WriteRecord: a new record (offset inside it); staged until CommitTransaction."""
        hdr = bytes((file_no,)) + _u24(offset) + _u24(len(data))
        self.command(CMD_WRITE_RECORD, hdr, data, mode, MODE_PLAIN)

    def read_records(self, file_no, offset, count, record_size, mode=MODE_PLAIN):
        """ReadRecords: `count` records (0 = all) starting `offset` records back from the newest.

        Returns the records as one bytes object, **newest first** (the card sends them oldest first;
        this reorders them), so `citizen.unpack_trip(r, 0)` is the newest record.
        """
        hdr = bytes((file_no,)) + _u24(offset) + _u24(count)
        r = self.command(
            CMD_READ_RECORDS, hdr, b"", MODE_PLAIN, mode, count * record_size if count else None
        )
        if len(r) % record_size:
            raise CardError(PROTOCOL_ERROR, "records not a multiple of the size", CMD_READ_RECORDS)
        n = len(r) // record_size
        if n < 2:
            return r
        return b"".join([r[i * record_size : (i + 1) * record_size] for i in range(n - 1, -1, -1)])

    def commit_transaction(self):
        self.command(CMD_COMMIT_TRANSACTION)

    def abort_transaction(self):
        self.command(CMD_ABORT_TRANSACTION)
