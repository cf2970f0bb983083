"""DESFire EV1 personalisation and inspection commands (card office, tests; not loaded by terminals).

    from card_schema.desfire_admin import DESFireAdmin
    df = DESFireAdmin(reader.transceive, trace=print_apdu)
    df.create_application(0x544B01, 0x0B, 4)
    df.get_file_settings(2)

DESFireAdmin is the full client: the tap-path client of card_schema.desfire plus these commands, the
other value operations and APDU tracing. This module also holds every status and command code with its
name; importing it makes str(CardError) name them ("permission denied (0x9D) in Debit") instead of
the terminal's terse "status 9D in DC".
"""

import struct

from card_schema import desfire
from card_schema.crypto import ZERO16, cbc_encrypt, crc32_bytes, rotl
from card_schema.crypto_host import (
    ZERO8,
    des_session_key,
    is_single_des,
    tdes_cbc_decrypt,
    tdes_cbc_encrypt,
    tdes_cmac_iv,
    tdes_ecb_decrypt,
    tdes_ecb_encrypt,
    xor,
)
from card_schema.desfire import (  # noqa: F401  (re-exported: the host imports them from here)
    APPLICATION_NOT_FOUND,
    BOUNDARY_ERROR,
    MODE_ENC,
    MODE_MAC,
    MODE_PLAIN,
    CardError,
    DESFire,
    _file_hdr,
)

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
AUTHENTICATION_ERROR = 0xAE
ADDITIONAL_FRAME = 0xAF
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
CMD_AUTHENTICATE_ISO = 0x1A
CMD_AUTHENTICATE_LEGACY = 0x0A
CMD_CHANGE_KEY = 0xC4
CMD_GET_KEY_SETTINGS = 0x45
CMD_CHANGE_KEY_SETTINGS = 0x54
CMD_CHANGE_FILE_SETTINGS = 0x5F
CMD_GET_KEY_VERSION = 0x64
CMD_CREATE_APPLICATION = 0xCA
CMD_DELETE_APPLICATION = 0xDA
CMD_GET_APPLICATION_IDS = 0x6A
CMD_FORMAT_PICC = 0xFC
CMD_GET_VERSION = 0x60
CMD_GET_CARD_UID = 0x51
CMD_GET_FILE_IDS = 0x6F
CMD_GET_FILE_SETTINGS = 0xF5
CMD_CREATE_STD_DATA_FILE = 0xCD
CMD_CREATE_BACKUP_DATA_FILE = 0xCB
CMD_CREATE_VALUE_FILE = 0xCC
CMD_CREATE_CYCLIC_RECORD_FILE = 0xC0
CMD_DELETE_FILE = 0xDF
CMD_CLEAR_RECORD_FILE = 0xEB

# Names for traces and error messages
COMMAND_NAMES = {
    0xAA: "AuthenticateAES",
    0x1A: "AuthenticateISO",
    0x0A: "Authenticate",
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
    0xC4: "ChangeKey",
    0x45: "GetKeySettings",
    0x54: "ChangeKeySettings",
    0x5F: "ChangeFileSettings",
    0x64: "GetKeyVersion",
    0xCA: "CreateApplication",
    0xDA: "DeleteApplication",
    0x6A: "GetApplicationIDs",
    0xFC: "FormatPICC",
    0x60: "GetVersion",
    0x51: "GetCardUID",
    0x6F: "GetFileIDs",
    0xF5: "GetFileSettings",
    0xCD: "CreateStdDataFile",
    0xCB: "CreateBackupDataFile",
    0xCC: "CreateValueFile",
    0xC0: "CreateCyclicRecordFile",
    0xDF: "DeleteFile",
    0xEB: "ClearRecordFile",
}

FILE_STD = 0
FILE_BACKUP = 1
FILE_VALUE = 2
FILE_LINEAR = 3
FILE_CYCLIC = 4


def status_name(status):
    return STATUS_NAMES.get(status, "unknown status")


def command_name(cmd):
    return COMMAND_NAMES.get(cmd, "command 0x%02X" % cmd)


def describe(e):
    """One line for a CardError: "authentication error (0xAE) in Debit",
    "card answered ISO status 6A82 in SelectApplication", "integrity: bad MAC in ReadData"."""
    s = e.status
    if e.msg:
        text = e.msg if s >= 0 else "%s: %s" % (status_name(s), e.msg)
    elif s > 0xFF:
        text = "card answered ISO status %04X" % s
    elif s >= 0:
        text = "%s (0x%02X)" % (status_name(s), s)
    else:
        text = status_name(s)
    if e.command is not None:
        text += " in " + command_name(e.command)
    return text


def _u24(n):
    return n.to_bytes(3, "little")


# The host's str(CardError) names the status and the command (the terminal does not load the names).
desfire.CardError.__str__ = describe


class DESFireAdmin(DESFire):
    """The full DESFire EV1 client (personalisation, key changes, settings, version).

    `trace(direction, frame, name)`, when given, sees every frame: (">", command frame, "Debit") and
    ("<", the card's answer, "Debit").
    """

    def __init__(self, transceive, wrapped=True, trace=None, random=None):
        send = transceive

        def traced(frame):
            name = command_name(frame[1 if wrapped else 0])
            trace(">", bytes(frame), name)
            resp = send(frame)
            trace("<", bytes(resp), name)
            return resp

        self.des = None  # None, "des" (ISO authenticated, 3DES messaging) or "legacy"
        super().__init__(traced if trace else send, wrapped, random)
        self.trace = trace

    # ---- DES / 2K3DES: the factory PICC master key -------------------------------------------------

    def _drop(self):
        DESFire._drop(self)
        self.des = None

    def authenticate_iso(self, key_no, key):
        """ISO authentication (0x1A) with a DES/2K3DES key (16 bytes; the factory PICC key is all
        zero). Afterwards commands run EV1 secure messaging with 3DES (8-byte CMAC, CRC32)."""
        self._authenticate_des(CMD_AUTHENTICATE_ISO, key_no, bytes(key))

    def authenticate_legacy(self, key_no, key):
        """Legacy DESFire authentication (0x0A) with a DES/2K3DES key. Afterwards plain commands run
        without MACs (the DES MAC / enciphered modes of native DESFire are not implemented here)."""
        self._authenticate_des(CMD_AUTHENTICATE_LEGACY, key_no, bytes(key))

    def _authenticate_des(self, cmd, key_no, key):
        self._drop()
        st, ek_b = self._xfer(cmd, bytes((key_no,)))
        if st != ADDITIONAL_FRAME:
            raise CardError(st, None, cmd)
        if len(ek_b) != 8:
            raise CardError(PROTOCOL_ERROR, "challenge", cmd)
        rnd_a = bytes(self.random(8))
        if cmd == CMD_AUTHENTICATE_LEGACY:
            # "send mode": the reader deciphers what it sends, CBC-style
            rnd_b = tdes_ecb_encrypt(key, ek_b)
            d1 = tdes_ecb_decrypt(key, rnd_a)
            d2 = tdes_ecb_decrypt(key, xor(rotl(rnd_b), d1))
            ct = d1 + d2
        else:
            rnd_b = tdes_cbc_decrypt(key, ZERO8, ek_b)
            ct = tdes_cbc_encrypt(key, ek_b, rnd_a + rotl(rnd_b))
        st, ek_a = self._xfer(ADDITIONAL_FRAME, ct)
        if st != OK:
            raise CardError(st, None, cmd)
        if cmd == CMD_AUTHENTICATE_LEGACY:
            proof = tdes_ecb_encrypt(key, ek_a) if len(ek_a) == 8 else b""
        else:
            proof = tdes_cbc_decrypt(key, ct[8:16], ek_a) if len(ek_a) == 8 else b""
        if proof != rotl(rnd_a):
            raise CardError(RESPONSE_INTEGRITY, "card key proof", cmd)
        self.session_key = des_session_key(rnd_a, rnd_b, is_single_des(key))
        self.iv = ZERO8
        self.auth_key_no = key_no
        self.des = "legacy" if cmd == CMD_AUTHENTICATE_LEGACY else "des"

    def command(self, cmd, header=b"", data=b"", mode=MODE_PLAIN, resp_mode=None, resp_len=None):
        if self.des is None:
            return DESFire.command(self, cmd, header, data, mode, resp_mode, resp_len)
        # a DES session (PICC level): plain commands; ISO sessions carry 8-byte 3DES CMACs
        if mode != MODE_PLAIN or (resp_mode or MODE_PLAIN) != MODE_PLAIN:
            raise CardError(PROTOCOL_ERROR, "only plain commands in a DES session", cmd)
        plain = bytes((cmd,)) + bytes(header) + bytes(data)
        if self.des == "des":
            self.iv = tdes_cmac_iv(self.session_key, self.iv, plain)
        st, resp = self._exchange(cmd, plain[1:])
        if st != OK:
            self._drop()
            raise CardError(st, None, cmd)
        if self.des == "legacy":
            return resp
        mac = tdes_cmac_iv(self.session_key, self.iv, resp[:-8] + b"\x00")
        self.iv = mac
        if len(resp) < 8 or mac != resp[-8:]:
            self._drop()
            raise CardError(RESPONSE_INTEGRITY, "bad MAC", cmd)
        return resp[:-8]

    def change_picc_key(self, new_key, aes=True, version=0):
        """ChangeKey of the PICC master key while authenticated with it (AES, or ISO with DES):
        the new key may be AES (`aes`) or 2K3DES. Ends the session."""
        if self.session_key is None or self.auth_key_no != 0 or self.des == "legacy":
            raise CardError(AUTHENTICATION_ERROR, "authenticate with the PICC key", CMD_CHANGE_KEY)
        hdr = bytes((0x80 if aes else 0x00,))
        body = bytes(new_key) + (bytes((version,)) if aes else b"")
        msg = body + crc32_bytes(bytes((CMD_CHANGE_KEY,)) + hdr + body)
        bs = 8 if self.des else 16
        msg += bytes(-len(msg) % bs)
        if self.des:
            ct = tdes_cbc_encrypt(self.session_key, self.iv, msg)
        else:
            ct = cbc_encrypt(self.session_key, self.iv, msg)
        st, _ = self._exchange(CMD_CHANGE_KEY, hdr + ct)
        self._drop()
        if st != OK:
            raise CardError(st, None, CMD_CHANGE_KEY)

    @property
    def authenticated(self):
        return self.session_key is not None

    def write_data(self, file_no, offset, data, mode=MODE_PLAIN):
        """WriteData; on a backup file it takes effect at CommitTransaction."""
        self.command(CMD_WRITE_DATA, _file_hdr(file_no, offset, len(data)), data, mode, MODE_PLAIN)

    def credit(self, file_no, amount, mode=MODE_PLAIN):
        self.debit(file_no, amount, mode, CMD_CREDIT)

    def limited_credit(self, file_no, amount, mode=MODE_PLAIN):
        self.debit(file_no, amount, mode, CMD_LIMITED_CREDIT)

    def abort_transaction(self):
        self.command(CMD_ABORT_TRANSACTION)

    def change_key(self, key_no, new_key, old_key=None, version=0):
        """ChangeKey (0xC4), AES. Changing the key of the current session ends the session.

        For another key the card wants (new XOR old) and a CRC32 of the new key, so `old_key` is
        required (None = all zero, the default key of a fresh application).
        """
        if self.session_key is None or self.auth_key_no is None:  # set and dropped together
            raise CardError(AUTHENTICATION_ERROR, "authenticate before ChangeKey", CMD_CHANGE_KEY)
        new_key = bytes(new_key)
        hdr = bytes((key_no,))
        same = (key_no & 0x0F) == (self.auth_key_no & 0x0F)
        if same:
            body = new_key + bytes((version,))
        else:
            body = xor(new_key, bytes(old_key) if old_key is not None else ZERO16) + bytes(
                (version,)
            )
        msg = body + crc32_bytes(bytes((CMD_CHANGE_KEY,)) + hdr + body)
        if not same:
            msg += crc32_bytes(new_key)
        msg += bytes(32 - len(msg))
        ct = cbc_encrypt(self.session_key, self.iv, msg)
        self.iv = ct[-16:]
        st, resp = self._exchange(CMD_CHANGE_KEY, hdr + ct)
        if st != OK:
            self._drop()
            raise CardError(st, None, CMD_CHANGE_KEY)
        if same:
            self._drop()  # the card answers without a MAC and forgets the session
            return
        self._unwrap(CMD_CHANGE_KEY, resp, MODE_PLAIN, None)

    def get_key_settings(self):
        """(key_settings, max_keys byte) e.g. (0x0F, 0x01) on a factory PICC, (0x0B, 0x84) AES app."""
        r = self.command(CMD_GET_KEY_SETTINGS)
        if len(r) != 2:
            raise CardError(PROTOCOL_ERROR, "bad key settings", CMD_GET_KEY_SETTINGS)
        return r[0], r[1]

    def get_key_version(self, key_no):
        return self.command(CMD_GET_KEY_VERSION, bytes((key_no,)))[0]

    def get_version(self):
        """GetVersion: dict with hardware / software info, uid (7 bytes), batch, production week/year."""
        r = self.command(CMD_GET_VERSION)
        if len(r) < 28:
            raise CardError(PROTOCOL_ERROR, "short version", CMD_GET_VERSION)
        return {
            "hw": r[0:7],
            "sw": r[7:14],
            "vendor": r[0],
            "hw_version": (r[3], r[4]),
            "storage": r[5],
            "sw_version": (r[10], r[11]),
            "uid": r[14:21],
            "batch": r[21:26],
            "week": (r[26] >> 4) * 10 + (r[26] & 0x0F),  # BCD
            "year": 2000 + (r[27] >> 4) * 10 + (r[27] & 0x0F),
        }

    def get_card_uid(self):
        """GetCardUID (needs authentication; the answer is enciphered): the real 7-byte UID."""
        if self.session_key is None:
            raise CardError(
                AUTHENTICATION_ERROR, "authenticate before GetCardUID", CMD_GET_CARD_UID
            )
        return self.command(CMD_GET_CARD_UID, resp_mode=MODE_ENC, resp_len=7)

    def get_application_ids(self):
        r = self.command(CMD_GET_APPLICATION_IDS)
        return [r[i] | (r[i + 1] << 8) | (r[i + 2] << 16) for i in range(0, len(r) - 2, 3)]

    def create_application(self, aid, key_settings, n_keys, aes=True):
        nk = n_keys | (0x80 if aes else 0)
        self.command(CMD_CREATE_APPLICATION, aid.to_bytes(3, "little") + bytes((key_settings, nk)))

    def delete_application(self, aid):
        self.command(CMD_DELETE_APPLICATION, aid.to_bytes(3, "little"))

    def format_picc(self):
        """FormatPICC: needs an authentication with the PICC master key."""
        self.command(CMD_FORMAT_PICC)

    def change_key_settings(self, settings):
        """ChangeKeySettings of the selected level (PICC or application), authenticated with its
        master key (AES session): the settings byte goes enciphered with its CRC32."""
        self.command(CMD_CHANGE_KEY_SETTINGS, b"", bytes((settings,)), MODE_ENC, MODE_PLAIN)

    def change_file_settings(self, file_no, comm, access_rights, free=False):
        """ChangeFileSettings: comm settings and the 2-byte access rights (citizen_host.
        access_rights); enciphered in the session of the change-access key, plain when `free`."""
        self.command(
            CMD_CHANGE_FILE_SETTINGS,
            bytes((file_no,)),
            bytes((comm,)) + bytes(access_rights),
            MODE_PLAIN if free else MODE_ENC,
            MODE_PLAIN,
        )

    def get_file_ids(self):
        return list(self.command(CMD_GET_FILE_IDS))

    def get_file_settings(self, file_no):
        """dict: type, comm, access (2 bytes as on the wire), read, write, read_write, change, and
        size (data) / lower, upper, limited_credit, limited_credit_enabled (value) /
        record_size, max_records, records (record)."""
        r = self.command(CMD_GET_FILE_SETTINGS, bytes((file_no,)))
        if len(r) < 7:
            raise CardError(PROTOCOL_ERROR, "short file settings", CMD_GET_FILE_SETTINGS)
        s = {
            "type": r[0],
            "comm": r[1],
            "access": r[2:4],
            "read": r[3] >> 4,
            "write": r[3] & 0x0F,
            "read_write": r[2] >> 4,
            "change": r[2] & 0x0F,
        }
        t = r[0]
        if t in (FILE_STD, FILE_BACKUP):
            s["size"] = struct.unpack("<I", r[4:7] + b"\x00")[0]
        elif t == FILE_VALUE:
            lo, hi, lc = struct.unpack_from("<iii", r, 4)
            s["lower"] = lo
            s["upper"] = hi
            s["limited_credit"] = lc
            s["limited_credit_enabled"] = r[16] if len(r) > 16 else 0
        else:
            s["record_size"] = struct.unpack("<I", r[4:7] + b"\x00")[0]
            s["max_records"] = struct.unpack("<I", r[7:10] + b"\x00")[0]
            s["records"] = struct.unpack("<I", r[10:13] + b"\x00")[0]
        return s

    def create_std_data_file(self, file_no, comm, access_rights, size):
        hdr = bytes((file_no, comm)) + bytes(access_rights) + _u24(size)
        self.command(CMD_CREATE_STD_DATA_FILE, hdr)

    def create_backup_data_file(self, file_no, comm, access_rights, size):
        hdr = bytes((file_no, comm)) + bytes(access_rights) + _u24(size)
        self.command(CMD_CREATE_BACKUP_DATA_FILE, hdr)

    def create_value_file(
        self, file_no, comm, access_rights, lower, upper, value, limited_credit_enabled=False
    ):
        hdr = bytes((file_no, comm)) + bytes(access_rights)
        hdr += struct.pack("<iiiB", lower, upper, value, 1 if limited_credit_enabled else 0)
        self.command(CMD_CREATE_VALUE_FILE, hdr)

    def create_cyclic_record_file(self, file_no, comm, access_rights, record_size, max_records):
        hdr = bytes((file_no, comm)) + bytes(access_rights) + _u24(record_size) + _u24(max_records)
        self.command(CMD_CREATE_CYCLIC_RECORD_FILE, hdr)

    def delete_file(self, file_no):
        self.command(CMD_DELETE_FILE, bytes((file_no,)))

    def clear_record_file(self, file_no):
        self.command(CMD_CLEAR_RECORD_FILE, bytes((file_no,)))
