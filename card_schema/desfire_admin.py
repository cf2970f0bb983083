"""DESFire EV1 personalisation and inspection commands (card office, tests; not loaded by terminals).

    from card_schema.desfire_admin import DESFireAdmin
    df = DESFireAdmin(reader.transceive)
    df.create_application(0x544B01, 0x0B, 4)
    df.get_file_settings(2)

DESFireAdmin is the full client: the tap-path client of card_schema.desfire plus these commands.
"""

import struct

from card_schema import desfire
from card_schema.crypto import ZERO16, cbc_encrypt, crc32_bytes, xor
from card_schema.desfire import (
    AUTHENTICATION_ERROR,
    MODE_ENC,
    MODE_PLAIN,
    OK,
    PROTOCOL_ERROR,
    CardError,
    DESFire,
    _u24,
)

CMD_CHANGE_KEY = 0xC4
CMD_GET_KEY_SETTINGS = 0x45
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

FILE_STD = 0
FILE_BACKUP = 1
FILE_VALUE = 2
FILE_LINEAR = 3
FILE_CYCLIC = 4

desfire.COMMAND_NAMES.update(
    {
        0xC4: "ChangeKey",
        0x45: "GetKeySettings",
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
)


class DESFireAdmin(DESFire):
    """The full DESFire EV1 client (personalisation, key changes, settings, version)."""

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
            "week": r[26],
            "year": r[27],
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
        self.command(CMD_CREATE_APPLICATION, _u24(aid) + bytes((key_settings, nk)))

    def delete_application(self, aid):
        self.command(CMD_DELETE_APPLICATION, _u24(aid))

    def format_picc(self):
        self.command(CMD_FORMAT_PICC)

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
