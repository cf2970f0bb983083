"""A stateful MIFARE DESFire EV1 card (AES applications), crypto-correct and persistent.

The emulator implements the subset tapkit uses the way the card does it: applications with AES keys and
key settings; standard, backup, value and cyclic record files; access rights per file; communication
modes per file with EV1 secure messaging (CMAC on every command and answer, enciphered data with CRC32);
transactions (Debit, Credit, LimitedCredit, WriteRecord and WriteData on backup files are staged until
CommitTransaction); the real status codes; frame chaining (0xAF) in both directions. Both framings are
accepted: ISO 7816-4 wrapped APDUs (CLA 0x90, what PC/SC readers send) and native DESFire frames (what a
PN532 terminal sends).

The card file (JSON) is the card's EEPROM: it is written atomically after every command that changes
committed state. Taking the card out of the field (`field_off()`) loses the authentication and every
uncommitted change, as does any error.

    card = DESFireCard.blank()                   # factory card: PICC key settings 0x0F, no apps
    card.save("card.json")
    df = DESFireAdmin(card.transceive)                # card_schema.desfire client, in process
    card = DESFireCard.load("card.json")

The PICC master key is the factory all-zero 2K3DES key until ChangeKey makes it AES (or another
2K3DES key): ISO authentication (0x1A, then EV1 secure messaging with 3DES CMACs) and legacy
authentication (0x0A) are modelled at the PICC level. Simplifications (documented, not hidden): after
legacy authentication only plain commands are served (native DESFire DES MAC / enciphered file access
answers PERMISSION_DENIED); application keys are AES only.

Key settings are enforced as on an EV1 (PICC level: bit 0 master key changeable, bit 1 free directory
listing, bit 2 free CreateApplication, bit 3 configuration changeable; application level: bit 2
free create/delete of files, bits 7-4 the ChangeKey key): FormatPICC always needs the PICC master
key; DeleteApplication needs the PICC master key, or the application's own master key when PICC
bit 2 is set; ChangeKeySettings (0x54, enciphered with CRC32) needs the master key of the selected
level and bit 3; ChangeFileSettings (0x5F) needs the file's change-access key (enciphered; plain when
that right is free, never when it is 0xF). Refusals: AUTHENTICATION_ERROR when the needed key is not
authenticated, PERMISSION_DENIED when the settings or rights forbid it.
Tearing: see transceive().
"""

import binascii
import json
import os
import struct
import tempfile

from card_schema.crypto import (
    ZERO16,
    cbc_decrypt,
    cbc_encrypt,
    cmac_iv,
    crc32_bytes,
    ev1_session_key,
    rotl,
)
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

# status codes: the same table the client reads (one definition of the card's answers)
from card_schema.desfire_admin import (  # noqa: E402
    ADDITIONAL_FRAME,
    APPLICATION_NOT_FOUND,
    AUTHENTICATION_ERROR,
    BOUNDARY_ERROR,
    COMMAND_ABORTED,
    COUNT_ERROR,
    DUPLICATE_ERROR,
    FILE_NOT_FOUND,
    ILLEGAL_COMMAND,
    INTEGRITY_ERROR,
    LENGTH_ERROR,
    NO_SUCH_KEY,
    OK,
    PARAMETER_ERROR,
    PERMISSION_DENIED,
)

PLAIN = 0
MAC = 1
ENC = 3

STD, BACKUP, VALUE, LINEAR, CYCLIC = 0, 1, 2, 3, 4
FREE = 0xE
NEVER = 0xF

MAX_FRAME = 59  # data bytes per frame the card sends (64-byte frame buffer)
MAX_APPS = 28
MAX_FILES = 32

# GetVersion: NXP, DESFire, EV1 (1.0), 4 KB, ISO 14443-2 and -3
_HW_VERSION = bytes.fromhex("04010101001805")
_SW_VERSION = bytes.fromhex("04010101041805")
_BATCH = bytes.fromhex("BA7C000000")


COMMIT_POINT = 0.7  # fraction of a command's processing at which its EEPROM update is done


class CardFileError(ValueError):
    """A card file that is not one (not JSON, or without a card in it): its text is one line."""


class FieldLost(Exception):
    """The RF field dropped during a frame (tearing): the card answers nothing."""


class _Status(Exception):
    def __init__(self, status):
        Exception.__init__(self, f"status 0x{status:02X}")
        self.status = status


class _NeedMore(Exception):
    """The command's data continues in the next frame (0xAF)."""


def _u24(b, off):
    return b[off] | (b[off + 1] << 8) | (b[off + 2] << 16)


def _p24(n):
    return struct.pack("<I", n)[:3]


def _pad16(n):
    return (n + 15) // 16 * 16


class DESFireCard:
    """One emulated DESFire EV1 card. `transceive(frame) -> response` is all a reader needs."""

    atqa = b"\x03\x44"  # ATQA as sent on the air (PN532 reports it as 0x0344 SENS_RES)
    sak = 0x20
    ats = bytes.fromhex("067577810280")
    atr = bytes.fromhex("3B8180018080")

    def __init__(self, uid, picc_key_settings=0x0F, apps=None, path=None):
        if len(uid) != 7:
            raise ValueError("UID must be 7 bytes")
        self.uid = bytes(uid)
        self.picc_key_settings = picc_key_settings
        self.picc_key_version = 0
        self.picc_key = bytes(16)  # factory: the all-zero 2K3DES key
        self.picc_key_aes = False
        self.apps = apps if apps is not None else {}  # aid -> app dict
        self.path = path
        self.random = os.urandom  # RndB source; tests may fix it
        self.frames = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.saves = 0
        self.tear = None  # tearing hook, see transceive()
        self.tears = 0
        self._hold = False
        self._dirty = False
        self._handlers = {
            0xAA: self._authenticate,
            0x1A: self._authenticate,
            0x0A: self._authenticate,
            0xC4: self._change_key,
            0x45: self._get_key_settings,
            0x54: self._change_key_settings,
            0x5F: self._change_file_settings,
            0x64: self._get_key_version,
            0xCA: self._create_application,
            0xDA: self._delete_application,
            0x6A: self._get_application_ids,
            0x5A: self._select_application,
            0xFC: self._format_picc,
            0x60: self._get_version,
            0x51: self._get_card_uid,
            0x6F: self._get_file_ids,
            0xF5: self._get_file_settings,
            0xCD: self._create_std_file,
            0xCB: self._create_backup_file,
            0xCC: self._create_value_file,
            0xC0: self._create_cyclic_file,
            0xDF: self._delete_file,
            0xBD: self._read_data,
            0x3D: self._write_data,
            0x6C: self._get_value,
            0x0C: self._credit,
            0xDC: self._debit,
            0x1C: self._limited_credit,
            0x3B: self._write_record,
            0xBB: self._read_records,
            0xEB: self._clear_record_file,
            0xC7: self._commit,
            0xA7: self._abort,
        }
        self.field_off()

    # ---- construction and persistence ----------------------------------------------------------

    @classmethod
    def blank(cls, uid=None, path=None):
        """A factory-fresh card: random 7-byte UID starting 0x04 (NXP), no applications."""
        if uid is None:
            uid = b"\x04" + os.urandom(6)
        return cls(bytes(uid), path=path)

    @classmethod
    def load(cls, path):
        """The card in a card file; CardFileError (one line) when the file is not a card file."""
        with open(path) as f:
            text = f.read()
        try:
            doc = json.loads(text)
            card = cls(binascii.unhexlify(doc["uid"]), path=path)
            card._restore(doc)
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
            why = (
                "not JSON"
                if isinstance(e, json.JSONDecodeError)
                else "damaged (%s)" % ("no %s" % e if isinstance(e, KeyError) else e)
            )
            raise CardFileError(
                "%s is not a card file: %s" % (path, "empty" if not text.strip() else why)
            ) from None
        return card

    def _restore(self, doc):
        """Set the EEPROM contents (applications, PICC key) from a card document (to_json())."""
        apps = {}
        for aid_hex, a in doc.get("apps", {}).items():
            files = {}
            for fno, f in a["files"].items():
                f = dict(f)
                if "data" in f:
                    f["data"] = bytearray(binascii.unhexlify(f["data"]))
                if "records" in f:
                    f["records"] = [bytes(binascii.unhexlify(r)) for r in f["records"]]
                files[int(fno)] = f
            apps[int(aid_hex, 16)] = {
                "key_settings": a["key_settings"],
                "aes": a.get("aes", True),
                "keys": [bytes(binascii.unhexlify(k)) for k in a["keys"]],
                "key_versions": list(a["key_versions"]),
                "files": files,
            }
        self.apps = apps
        self.picc_key_settings = doc.get("picc_key_settings", 0x0F)
        self.picc_key_version = doc.get("picc_key_version", 0)
        self.picc_key = binascii.unhexlify(doc.get("picc_key", "00" * 16))
        self.picc_key_aes = doc.get("picc_key_type", "2k3des") == "aes"

    def to_json(self):
        apps = {}
        for aid, a in sorted(self.apps.items()):
            files = {}
            for fno, f in sorted(a["files"].items()):
                f = dict(f)
                if "data" in f:
                    f["data"] = binascii.hexlify(bytes(f["data"])).decode()
                if "records" in f:
                    f["records"] = [binascii.hexlify(r).decode() for r in f["records"]]
                files[str(fno)] = f
            apps[f"{aid:06X}"] = {
                "key_settings": a["key_settings"],
                "aes": a["aes"],
                "keys": [binascii.hexlify(k).decode() for k in a["keys"]],
                "key_versions": a["key_versions"],
                "files": files,
            }
        return {
            "version": 1,
            "type": "desfire-ev1",
            "uid": binascii.hexlify(self.uid).decode(),
            "picc_key_settings": self.picc_key_settings,
            "picc_key_version": self.picc_key_version,
            "picc_key": binascii.hexlify(self.picc_key).decode(),
            "picc_key_type": "aes" if self.picc_key_aes else "2k3des",
            "apps": apps,
        }

    def save(self, path=None):
        """Write the card file atomically (temp file, fsync, rename): a crash leaves old or new."""
        path = path or self.path
        if path is None:
            return
        self.path = path
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".card-", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.saves += 1

    def _persist(self):
        if self._hold:
            self._dirty = True  # inside a torn command: written (or not) when the tear resolves
        else:
            self.save()

    # ---- RF field ------------------------------------------------------------------------------

    def field_off(self):
        """The card left the field: authentication, selection and uncommitted changes are gone."""
        self.selected = 0
        self._drop_auth()
        self._staged = {}
        self._cont = None

    def select(self):
        """Anticollision / RATS done: the card is at PICC level, unauthenticated."""
        self.field_off()

    def _drop_auth(self):
        self.auth_key_no = None
        self.session_key = None
        self.iv = None
        self.cipher = (
            None  # "aes" (0xAA), "des" (ISO 0x1A: EV1 messaging with 3DES), "legacy" (0x0A)
        )

    # ---- frames --------------------------------------------------------------------------------

    def transceive(self, frame):
        """One frame in, one frame out. CLA 0x90 = ISO 7816-4 wrapped, anything else native.

        Tearing: when `self.tear(card, frame)` is set it decides, frame by frame, whether the field
        drops: None (no), "before" (the card never gets the frame), "after" (the card runs the command
        but the answer is lost) or a float f in [0, 1): the card loses power at fraction f of its
        processing. A command's EEPROM update is atomic (DESFire's tearing protection for commits,
        key changes, file and application creation) and completes at COMMIT_POINT of the command:
        torn before it, the card is as before the command; after it, the update is in. In every case
        the card then loses its session and every uncommitted change, and the reader gets no answer
        (FieldLost).
        """
        tear = self.tear(self, frame) if self.tear is not None else None
        if tear is None:
            return self._transceive(frame)
        self.tears += 1
        if tear == "before":
            self.field_off()
            raise FieldLost("field dropped before the card got the frame")
        if tear == "after":
            try:
                self._transceive(frame)
            finally:
                self.field_off()
            raise FieldLost("field dropped before the card's answer")
        snapshot = self.to_json()
        self._hold, self._dirty = True, False
        try:
            self._transceive(frame)
        finally:
            self._hold = False
            dirty, self._dirty = self._dirty, False
            if dirty:
                if float(tear) >= COMMIT_POINT:
                    self.save()
                else:
                    self._restore(snapshot)
            self.field_off()
        raise FieldLost("field dropped inside the command (at %d%%)" % (float(tear) * 100))

    def _transceive(self, frame):
        frame = bytes(frame)
        self.frames += 1
        self.bytes_in += len(frame)
        wrapped = len(frame) >= 5 and frame[0] == 0x90
        if wrapped:
            if frame[2] != 0 or frame[3] != 0:
                return self._out(b"\x6a\x86", None)  # wrong P1-P2
            cmd = frame[1]
            if len(frame) == 5:
                data = b""
            else:
                lc = frame[4]
                data = frame[5 : 5 + lc]
                if len(data) != lc or len(frame) not in (5 + lc, 6 + lc):
                    return self._out(b"\x67\x00", None)  # wrong length
        elif frame:
            cmd = frame[0]
            data = frame[1:]
        else:
            return b""
        status, resp = self._frame(cmd, data)
        if wrapped:
            return self._out(resp + bytes((0x91, status)), None)
        return self._out(bytes((status,)) + resp, None)

    def _out(self, resp, _):
        self.bytes_out += len(resp)
        return resp

    def _frame(self, cmd, data):
        cont = self._cont
        self._cont = None
        if cmd == ADDITIONAL_FRAME and cont is not None:
            kind = cont[0]
            if kind == "frames":
                return self._send_frames(cont[1])
            if kind == "cmd":
                return self._run(cont[1], cont[2] + data)
            if kind == "auth":
                return self._auth_step2(cont, data)
            if kind == "auth-des":
                return self._des_auth2(cont, data)
        if cmd == ADDITIONAL_FRAME:
            return self._error(ILLEGAL_COMMAND)
        if cont is not None:
            # a new command while the card waits for (or still has) more frames: the card drops
            # the unfinished one and answers COMMAND_ABORTED (the new command does not run)
            return self._error(COMMAND_ABORTED)
        return self._run(cmd, data)

    def _run(self, cmd, payload):
        h = self._handlers.get(cmd)
        if h is None:
            return self._error(ILLEGAL_COMMAND)
        try:
            r = h(cmd, payload)
        except _NeedMore:
            self._cont = ("cmd", cmd, payload)
            return ADDITIONAL_FRAME, b""
        except _Status as e:
            return self._error(e.status)
        if isinstance(r, tuple):  # (status, data) already final (authentication, frames)
            return r
        return self._chunk(r)

    def _chunk(self, resp):
        frames = [resp[i : i + MAX_FRAME] for i in range(0, len(resp), MAX_FRAME)]
        return self._send_frames(frames or [b""])

    def _send_frames(self, frames):
        if len(frames) > 1:
            self._cont = ("frames", frames[1:])
            return ADDITIONAL_FRAME, frames[0]
        return OK, frames[0]

    def _error(self, status):
        # every error ends the authentication and throws away the transaction
        self._drop_auth()
        self._staged = {}
        return status, b""

    # ---- secure messaging ----------------------------------------------------------------------

    def _rx(self, cmd, hdr, body, comm, n):
        """Check and unwrap `n` command data bytes sent after `hdr` in `comm`; update the IV."""
        sk = self.session_key
        if sk is None:
            comm = PLAIN
        if self.cipher == "legacy":
            if comm != PLAIN:
                raise _Status(PERMISSION_DENIED)  # legacy DES messaging: not modelled
            sk = None
        if comm == ENC and n:
            need = self._pad(n + 4)
        elif comm == MAC and n:
            need = n + 8
        else:
            need = n
        if len(body) < need:
            raise _NeedMore()
        if len(body) > need:
            raise _Status(LENGTH_ERROR)
        if sk is None:
            return bytes(body)
        head = bytes((cmd,)) + bytes(hdr)
        if comm == ENC and n:
            pt = self._dec(sk, self.iv, body)
            self.iv = bytes(body[-self._bs() :])
            data = pt[:n]
            if crc32_bytes(head + data) != pt[n : n + 4]:
                raise _Status(INTEGRITY_ERROR)
            return data
        data = bytes(body[:n])
        mac = self._mac(sk, self.iv, head + data)
        self.iv = mac
        if comm == MAC and n and mac[:8] != bytes(body[n:]):
            raise _Status(INTEGRITY_ERROR)
        return data

    def _tx(self, data, comm=PLAIN):
        """Protect a successful answer: CMAC (plain/MAC) or encipherment, when authenticated."""
        sk = self.session_key
        if sk is None or self.cipher == "legacy":
            return bytes(data)
        if comm == ENC and data:
            msg = bytes(data) + crc32_bytes(bytes(data) + b"\x00")
            msg += bytes(self._pad(len(msg)) - len(msg))
            ct = self._enc(sk, self.iv, msg)
            self.iv = ct[-self._bs() :]
            return ct
        mac = self._mac(sk, self.iv, bytes(data) + b"\x00")
        self.iv = mac
        return bytes(data) + mac[:8]

    def _bs(self):
        return 8 if self.cipher == "des" else 16

    def _pad(self, n):
        bs = self._bs()
        return (n + bs - 1) // bs * bs

    def _mac(self, sk, iv, msg):
        return tdes_cmac_iv(sk, iv, msg) if self.cipher == "des" else cmac_iv(sk, iv, msg)

    def _enc(self, sk, iv, msg):
        return tdes_cbc_encrypt(sk, iv, msg) if self.cipher == "des" else cbc_encrypt(sk, iv, msg)

    def _dec(self, sk, iv, msg):
        return tdes_cbc_decrypt(sk, iv, msg) if self.cipher == "des" else cbc_decrypt(sk, iv, msg)

    def _simple(self, cmd, payload, hdr_len):
        """A command with a fixed header and no data: check length, run the CMAC."""
        if len(payload) != hdr_len:
            raise _Status(LENGTH_ERROR)
        self._rx(cmd, payload, b"", PLAIN, 0)
        return payload

    # ---- helpers -------------------------------------------------------------------------------

    def _app(self):
        if self.selected == 0:
            raise _Status(PERMISSION_DENIED)
        return self.apps[self.selected]

    def _is_master(self):
        return self.selected != 0 and self.auth_key_no == 0

    def _file(self, file_no, types=None):
        f = self._app()["files"].get(file_no)
        if f is None:
            raise _Status(FILE_NOT_FOUND)
        if types is not None and f["type"] not in types:
            raise _Status(PERMISSION_DENIED)  # DESFire: command not allowed on this file type
        return f

    @staticmethod
    def _rights(f):
        ar = f["access"]  # int: read<<12 | write<<8 | read_write<<4 | change
        return {"r": ar >> 12, "w": (ar >> 8) & 0xF, "rw": (ar >> 4) & 0xF, "car": ar & 0xF}

    def _access(self, f, needs):
        """The comm mode an access gets, or raise: key right -> file comm, free -> plain."""
        r = self._rights(f)
        keys = [r[n] for n in needs]
        if self.auth_key_no is not None and self.auth_key_no in keys:
            return f["comm"]
        if FREE in keys:
            return PLAIN
        if self.auth_key_no is None:
            raise _Status(AUTHENTICATION_ERROR)
        raise _Status(PERMISSION_DENIED)

    def _need_master_or(self, free_bit):
        """App-level management: free by key settings bit, or after app master authentication."""
        if self.selected == 0:
            if self.picc_key_settings & free_bit or self.auth_key_no == 0:
                return
            raise _Status(AUTHENTICATION_ERROR)
        if self._app()["key_settings"] & free_bit:
            return
        if self.auth_key_no is None:
            raise _Status(AUTHENTICATION_ERROR)
        if self.auth_key_no != 0:
            raise _Status(PERMISSION_DENIED)

    # ---- authentication and keys ---------------------------------------------------------------

    def _authenticate(self, cmd, p):
        if len(p) != 1:
            raise _Status(LENGTH_ERROR)
        key_no = p[0]
        self._drop_auth()
        self._staged = {}
        if self.selected == 0:
            if key_no != 0:
                raise _Status(NO_SUCH_KEY)
            key, aes = self.picc_key, self.picc_key_aes
        else:
            app = self._app()
            if key_no >= len(app["keys"]):
                raise _Status(NO_SUCH_KEY)
            key, aes = app["keys"][key_no], app["aes"]
        if cmd == 0xAA and not aes or cmd != 0xAA and aes:
            raise _Status(AUTHENTICATION_ERROR)  # the key is of the other type
        if cmd != 0xAA:
            return self._des_auth1(cmd, key_no, key)
        rnd_b = bytes(self.random(16))
        ek_b = cbc_encrypt(key, ZERO16, rnd_b)
        self._cont = ("auth", key_no, key, rnd_b, ek_b)
        return ADDITIONAL_FRAME, ek_b

    def _des_auth1(self, cmd, key_no, key):
        """DES / 2K3DES authentication: legacy (0x0A, 'send mode' deciphering) or ISO (0x1A, CBC)."""
        rnd_b = bytes(self.random(8))
        if cmd == 0x0A:
            ek_b = tdes_ecb_decrypt(key, rnd_b)  # the card "deciphers" too in the legacy scheme
        else:
            ek_b = tdes_cbc_encrypt(key, ZERO8, rnd_b)
        self._cont = ("auth-des", cmd, key_no, key, rnd_b, ek_b)
        return ADDITIONAL_FRAME, ek_b

    def _des_auth2(self, cont, p):
        _, cmd, key_no, key, rnd_b, ek_b = cont
        if len(p) != 16:
            return self._error(LENGTH_ERROR)
        if cmd == 0x0A:  # the reader sent D(A) || D(B' ^ D(A)) (CBC "send mode" with deciphering)
            d1 = tdes_ecb_encrypt(key, p[:8])
            d2 = xor(tdes_ecb_encrypt(key, p[8:16]), p[:8])
            pt = d1 + d2
        else:
            pt = tdes_cbc_decrypt(key, ek_b, p)
        rnd_a = pt[:8]
        if pt[8:16] != rotl(rnd_b):
            return self._error(AUTHENTICATION_ERROR)
        if cmd == 0x0A:
            resp = tdes_ecb_decrypt(key, rotl(rnd_a))
        else:
            resp = tdes_cbc_encrypt(key, p[8:16], rotl(rnd_a))
        self.session_key = des_session_key(rnd_a, rnd_b, is_single_des(key))
        self.iv = ZERO8
        self.auth_key_no = key_no
        self.cipher = "legacy" if cmd == 0x0A else "des"
        return OK, resp

    def _auth_step2(self, cont, p):
        _, key_no, key, rnd_b, ek_b = cont
        if len(p) != 32:
            return self._error(LENGTH_ERROR)
        pt = cbc_decrypt(key, ek_b, p)
        rnd_a = pt[:16]
        if pt[16:32] != rotl(rnd_b):
            return self._error(AUTHENTICATION_ERROR)
        resp = cbc_encrypt(key, p[16:32], rotl(rnd_a))
        self.session_key = ev1_session_key(rnd_a, rnd_b)
        self.iv = ZERO16
        self.auth_key_no = key_no
        self.cipher = "aes"
        return OK, resp

    def _change_key(self, cmd, p):
        if len(p) < 1:
            raise _Status(LENGTH_ERROR)
        key_no = p[0] & 0x3F
        if self.session_key is None or self.cipher == "legacy":
            raise _Status(AUTHENTICATION_ERROR)
        if self.selected == 0:
            return self._change_picc_key(cmd, p)
        app = self._app()
        if key_no >= len(app["keys"]):
            raise _Status(NO_SUCH_KEY)
        ks = app["key_settings"]
        ck = ks >> 4
        auth = self.auth_key_no
        if key_no == 0:
            if auth != 0 or not (ks & 0x01):
                raise _Status(PERMISSION_DENIED)
        elif ck == 0xF:
            raise _Status(PERMISSION_DENIED)
        elif ck == 0xE:
            if auth != key_no:
                raise _Status(PERMISSION_DENIED)
        elif auth != ck:
            raise _Status(PERMISSION_DENIED)
        body = p[1:]
        if len(body) < 32:
            raise _NeedMore()
        if len(body) != 32:
            raise _Status(LENGTH_ERROR)
        pt = cbc_decrypt(self.session_key, self.iv, body)
        self.iv = bytes(body[-16:])
        head = bytes((cmd, p[0]))
        if crc32_bytes(head + pt[:17]) != pt[17:21]:
            raise _Status(INTEGRITY_ERROR)
        version = pt[16]
        if key_no == auth:
            new_key = pt[:16]
        else:
            new_key = xor(pt[:16], app["keys"][key_no])
            if crc32_bytes(new_key) != pt[21:25]:
                raise _Status(INTEGRITY_ERROR)
        app["keys"][key_no] = bytes(new_key)
        app["key_versions"][key_no] = version
        self._persist()
        if key_no == auth:
            self._drop_auth()  # answer without MAC; the session is gone
            return OK, b""
        return self._tx(b"")

    def _change_picc_key(self, cmd, p):
        """ChangeKey of the PICC master key (after authenticating with it): the key number byte
        says the new key's type (0x80 = AES, 0x00 = DES/2K3DES); the card answers without a MAC."""
        if p[0] & 0x3F != 0 or self.auth_key_no != 0:
            raise _Status(NO_SUCH_KEY if p[0] & 0x3F else PERMISSION_DENIED)
        if not self.picc_key_settings & 0x01:
            raise _Status(PERMISSION_DENIED)
        aes = bool(p[0] & 0x80)
        n = 16 + (1 if aes else 0) + 4  # key, (AES: version), CRC32
        body = p[1:]
        need = self._pad(n)
        if len(body) < need:
            raise _NeedMore()
        if len(body) != need:
            raise _Status(LENGTH_ERROR)
        pt = self._dec(self.session_key, self.iv, body)
        m = n - 4
        if crc32_bytes(bytes((cmd, p[0])) + pt[:m]) != pt[m:n]:
            raise _Status(INTEGRITY_ERROR)
        self.picc_key = bytes(pt[:16])
        self.picc_key_aes = aes
        self.picc_key_version = pt[16] if aes else 0
        self._persist()
        self._drop_auth()
        return OK, b""

    def _change_key_settings(self, cmd, p):
        """ChangeKeySettings (0x54): E(settings || CRC32(cmd || settings) || padding), after
        authenticating with the master key of the selected level (PICC or application)."""
        if self.session_key is None or self.auth_key_no != 0:
            raise _Status(AUTHENTICATION_ERROR)
        owner = self if self.selected == 0 else None
        ks = self.picc_key_settings if owner else self._app()["key_settings"]
        if not ks & 0x08:
            raise _Status(PERMISSION_DENIED)  # configuration frozen
        new = self._rx(cmd, b"", p, ENC, 1)[0]
        if owner:
            self.picc_key_settings = new
        else:
            self._app()["key_settings"] = new
        self._persist()
        return self._tx(b"")

    def _get_key_settings(self, cmd, p):
        self._simple(cmd, p, 0)
        if self.selected == 0:
            return self._tx(bytes((self.picc_key_settings, 0x81 if self.picc_key_aes else 0x01)))
        app = self._app()
        n = len(app["keys"]) | (0x80 if app["aes"] else 0)
        return self._tx(bytes((app["key_settings"], n)))

    def _get_key_version(self, cmd, p):
        self._simple(cmd, p, 1)
        if self.selected == 0:
            if p[0] != 0:
                raise _Status(NO_SUCH_KEY)
            return self._tx(bytes((self.picc_key_version,)))
        app = self._app()
        if p[0] >= len(app["keys"]):
            raise _Status(NO_SUCH_KEY)
        return self._tx(bytes((app["key_versions"][p[0]],)))

    # ---- PICC level ----------------------------------------------------------------------------

    def _select_application(self, cmd, p):
        if len(p) != 3:
            raise _Status(LENGTH_ERROR)
        aid = _u24(p, 0)
        self._drop_auth()
        self._staged = {}
        if aid != 0 and aid not in self.apps:
            self.selected = 0
            raise _Status(APPLICATION_NOT_FOUND)
        self.selected = aid
        return b""

    def _create_application(self, cmd, p):
        self._simple(cmd, p, 5)
        if self.selected != 0:
            raise _Status(PERMISSION_DENIED)
        self._need_master_or(0x04)
        aid = _u24(p, 0)
        ks, nk = p[3], p[4]
        n = nk & 0x0F
        if aid == 0 or not 1 <= n <= 14 or (nk & 0x40):
            raise _Status(PARAMETER_ERROR)
        if aid in self.apps:
            raise _Status(DUPLICATE_ERROR)
        if len(self.apps) >= MAX_APPS:
            raise _Status(COUNT_ERROR)
        self.apps[aid] = {
            "key_settings": ks,
            "aes": bool(nk & 0x80),
            "keys": [ZERO16] * n,
            "key_versions": [0] * n,
            "files": {},
        }
        self._persist()
        return self._tx(b"")

    def _delete_application(self, cmd, p):
        self._simple(cmd, p, 3)
        aid = _u24(p, 0)
        if aid not in self.apps:
            raise _Status(APPLICATION_NOT_FOUND)
        if self.selected == 0:
            if self.auth_key_no != 0:
                raise _Status(AUTHENTICATION_ERROR)  # the PICC master key
        elif not (self.selected == aid and self._is_master()):
            raise _Status(PERMISSION_DENIED)
        elif not self.picc_key_settings & 0x04:
            raise _Status(PERMISSION_DENIED)  # PICC bit 2 clear: only the PICC master key deletes
        del self.apps[aid]
        self._persist()
        r = self._tx(b"")  # answered in the session it ran in; deleting the selected app ends it
        if self.selected == aid:
            self.selected = 0
            self._drop_auth()
        return r

    def _get_application_ids(self, cmd, p):
        self._simple(cmd, p, 0)
        if self.selected != 0:
            raise _Status(PERMISSION_DENIED)
        self._need_master_or(0x02)
        return self._tx(b"".join(_p24(a) for a in sorted(self.apps)))

    def _format_picc(self, cmd, p):
        self._simple(cmd, p, 0)
        if self.selected != 0:
            raise _Status(PERMISSION_DENIED)
        if self.auth_key_no != 0:
            raise _Status(
                AUTHENTICATION_ERROR
            )  # always the PICC master key, whatever the settings
        self.apps = {}
        self._persist()
        return self._tx(b"")

    def _get_version(self, cmd, p):
        self._simple(cmd, p, 0)
        info = (
            _HW_VERSION + _SW_VERSION + self.uid + _BATCH + b"\x30\x13"
        )  # production week 30, year 2013 (BCD)
        full = self._tx(info)
        # always three frames (7, 7, the rest), whatever the frame size
        return self._send_frames([full[:7], full[7:14], full[14:]])

    def _get_card_uid(self, cmd, p):
        self._simple(cmd, p, 0)
        if self.session_key is None:
            raise _Status(AUTHENTICATION_ERROR)
        return self._tx(self.uid, ENC)

    # ---- files ---------------------------------------------------------------------------------

    def _get_file_ids(self, cmd, p):
        self._simple(cmd, p, 0)
        app = self._app()
        if not (app["key_settings"] & 0x02) and not self._is_master():
            raise _Status(
                PERMISSION_DENIED if self.auth_key_no is not None else AUTHENTICATION_ERROR
            )
        return self._tx(bytes(sorted(app["files"])))

    def _get_file_settings(self, cmd, p):
        self._simple(cmd, p, 1)
        app = self._app()
        if not (app["key_settings"] & 0x02) and not self._is_master():
            raise _Status(
                PERMISSION_DENIED if self.auth_key_no is not None else AUTHENTICATION_ERROR
            )
        f = self._file(p[0])
        out = bytes((f["type"], f["comm"])) + struct.pack("<H", f["access"])
        t = f["type"]
        if t in (STD, BACKUP):
            out += _p24(f["size"])
        elif t == VALUE:
            out += struct.pack(
                "<iiiB", f["lower"], f["upper"], f["limited_credit"], f["limited_credit_enabled"]
            )
        else:
            out += _p24(f["record_size"]) + _p24(f["max_records"]) + _p24(len(f["records"]))
        return self._tx(out)

    def _create_file(self, file_no, f):
        app = self._app()
        self._need_master_or(0x04)
        if file_no >= MAX_FILES or f["comm"] not in (PLAIN, MAC, ENC):
            raise _Status(PARAMETER_ERROR)
        if file_no in app["files"]:
            raise _Status(DUPLICATE_ERROR)
        app["files"][file_no] = f
        self._persist()
        return self._tx(b"")

    def _data_file(self, cmd, p, t):
        self._simple(cmd, p, 7)
        size = _u24(p, 4)
        if size == 0:
            raise _Status(PARAMETER_ERROR)
        f = {
            "type": t,
            "comm": p[1],
            "access": p[2] | (p[3] << 8),
            "size": size,
            "data": bytearray(size),
        }
        return self._create_file(p[0], f)

    def _create_std_file(self, cmd, p):
        return self._data_file(cmd, p, STD)

    def _create_backup_file(self, cmd, p):
        return self._data_file(cmd, p, BACKUP)

    def _create_value_file(self, cmd, p):
        self._simple(cmd, p, 17)
        lower, upper, value, lc = struct.unpack_from("<iiiB", p, 4)
        if lower > upper or not lower <= value <= upper:
            raise _Status(BOUNDARY_ERROR)
        f = {
            "type": VALUE,
            "comm": p[1],
            "access": p[2] | (p[3] << 8),
            "lower": lower,
            "upper": upper,
            "value": value,
            "limited_credit": 0,
            "limited_credit_enabled": lc & 1,
        }
        return self._create_file(p[0], f)

    def _create_cyclic_file(self, cmd, p):
        self._simple(cmd, p, 10)
        rs, mx = _u24(p, 4), _u24(p, 7)
        if rs == 0 or mx < 2:
            raise _Status(PARAMETER_ERROR)
        f = {
            "type": CYCLIC,
            "comm": p[1],
            "access": p[2] | (p[3] << 8),
            "record_size": rs,
            "max_records": mx,
            "records": [],  # committed, oldest first; at most max_records - 1 are kept
        }
        return self._create_file(p[0], f)

    def _change_file_settings(self, cmd, p):
        """ChangeFileSettings (0x5F): file number, then comm settings (1) and access rights (2),
        enciphered with CRC32 unless the change-access right is free."""
        if len(p) < 1:
            raise _Status(LENGTH_ERROR)
        f = self._file(p[0])
        car = self._rights(f)["car"]
        if car == NEVER:
            raise _Status(PERMISSION_DENIED)
        if car == FREE:
            data = self._rx(cmd, p[:1], p[1:], PLAIN, 3)
        elif self.auth_key_no is None:
            raise _Status(AUTHENTICATION_ERROR)
        elif self.auth_key_no != car:
            raise _Status(PERMISSION_DENIED)
        else:
            data = self._rx(cmd, p[:1], p[1:], ENC, 3)
        if data[0] > ENC:
            raise _Status(PARAMETER_ERROR)
        f["comm"] = data[0]
        f["access"] = data[1] | data[2] << 8
        self._persist()
        return self._tx(b"")

    def _delete_file(self, cmd, p):
        self._simple(cmd, p, 1)
        app = self._app()
        self._need_master_or(0x04)
        if p[0] not in app["files"]:
            raise _Status(FILE_NOT_FOUND)
        del app["files"][p[0]]
        self._staged.pop(p[0], None)
        self._persist()
        return self._tx(b"")

    # ---- data files ----------------------------------------------------------------------------

    def _read_data(self, cmd, p):
        if len(p) != 7:
            raise _Status(LENGTH_ERROR)
        f = self._file(p[0], (STD, BACKUP))
        comm = self._access(f, ("r", "rw"))
        self._rx(cmd, p, b"", PLAIN, 0)
        off, n = _u24(p, 1), _u24(p, 4)
        if n == 0:
            n = f["size"] - off
        if off >= f["size"] or off + n > f["size"]:
            raise _Status(BOUNDARY_ERROR)
        return self._tx(bytes(f["data"][off : off + n]), comm)

    def _write_data(self, cmd, p):
        if len(p) < 7:
            raise _Status(LENGTH_ERROR)
        f = self._file(p[0], (STD, BACKUP))
        comm = self._access(f, ("w", "rw"))
        off, n = _u24(p, 1), _u24(p, 4)
        if n == 0:
            raise _Status(LENGTH_ERROR)
        if off + n > f["size"]:
            raise _Status(BOUNDARY_ERROR)
        data = self._rx(cmd, p[:7], p[7:], comm, n)
        if f["type"] == BACKUP:
            st = self._staged.setdefault(p[0], {"data": bytearray(f["data"])})
            st["data"][off : off + n] = data
        else:
            f["data"][off : off + n] = data
            self._persist()  # a standard data file is written at once
        return self._tx(b"")

    # ---- value files ---------------------------------------------------------------------------

    def _value_staged(self, file_no):
        return self._staged.setdefault(
            file_no, {"delta": 0, "debited": 0, "limited": False, "credited": False}
        )

    def _get_value(self, cmd, p):
        if len(p) != 1:
            raise _Status(LENGTH_ERROR)
        f = self._file(p[0], (VALUE,))
        comm = self._access(f, ("r", "w", "rw"))
        self._rx(cmd, p, b"", PLAIN, 0)
        return self._tx(struct.pack("<i", f["value"]), comm)

    def _value_cmd(self, cmd, p, needs):
        if len(p) < 1:
            raise _Status(LENGTH_ERROR)
        f = self._file(p[0], (VALUE,))
        comm = self._access(f, needs)
        amount = struct.unpack("<i", self._rx(cmd, p[:1], p[1:], comm, 4))[0]
        if amount < 0:
            raise _Status(PARAMETER_ERROR)
        return f, self._value_staged(p[0]), amount

    def _credit(self, cmd, p):
        f, st, amount = self._value_cmd(cmd, p, ("rw",))
        if f["value"] + st["delta"] + amount > f["upper"]:
            raise _Status(BOUNDARY_ERROR)
        st["delta"] += amount
        st["credited"] = True
        return self._tx(b"")

    def _debit(self, cmd, p):
        f, st, amount = self._value_cmd(cmd, p, ("r", "w", "rw"))
        if f["value"] + st["delta"] - amount < f["lower"]:
            raise _Status(BOUNDARY_ERROR)
        st["delta"] -= amount
        st["debited"] += amount
        return self._tx(b"")

    def _limited_credit(self, cmd, p):
        f, st, amount = self._value_cmd(cmd, p, ("w", "rw"))
        if not f["limited_credit_enabled"] or st["limited"]:
            raise _Status(PERMISSION_DENIED)
        if amount > f["limited_credit"] or f["value"] + st["delta"] + amount > f["upper"]:
            raise _Status(BOUNDARY_ERROR)
        st["delta"] += amount
        st["limited"] = True
        return self._tx(b"")

    # ---- record files --------------------------------------------------------------------------

    def _write_record(self, cmd, p):
        if len(p) < 7:
            raise _Status(LENGTH_ERROR)
        f = self._file(p[0], (LINEAR, CYCLIC))
        comm = self._access(f, ("w", "rw"))
        off, n = _u24(p, 1), _u24(p, 4)
        if n == 0:
            raise _Status(LENGTH_ERROR)
        if off + n > f["record_size"]:
            raise _Status(BOUNDARY_ERROR)
        data = self._rx(cmd, p[:7], p[7:], comm, n)
        st = self._staged.setdefault(p[0], {})
        if "record" not in st:
            st["record"] = bytearray(f["record_size"])
        st["record"][off : off + n] = data  # writes in one transaction go to the same new record
        return self._tx(b"")

    def _read_records(self, cmd, p):
        if len(p) != 7:
            raise _Status(LENGTH_ERROR)
        f = self._file(p[0], (LINEAR, CYCLIC))
        comm = self._access(f, ("r", "rw"))
        self._rx(cmd, p, b"", PLAIN, 0)
        off, count = _u24(p, 1), _u24(p, 4)
        recs = f["records"]  # oldest first
        avail = len(recs) - off
        if off >= len(recs) or count > avail:
            raise _Status(BOUNDARY_ERROR)
        if count == 0:
            count = avail
        newest = len(recs) - 1 - off
        # sent in chronological order: the oldest of the requested records first
        return self._tx(b"".join(recs[newest - count + 1 : newest + 1]), comm)

    def _clear_record_file(self, cmd, p):
        self._simple(cmd, p, 1)
        f = self._file(p[0], (LINEAR, CYCLIC))
        r = self._rights(f)
        if not (self.auth_key_no is not None and self.auth_key_no == r["rw"]) and r["rw"] != FREE:
            raise _Status(AUTHENTICATION_ERROR if self.auth_key_no is None else PERMISSION_DENIED)
        st = self._staged.setdefault(p[0], {})
        st["clear"] = True
        st.pop("record", None)
        return self._tx(b"")

    # ---- transactions --------------------------------------------------------------------------

    def _commit(self, cmd, p):
        self._simple(cmd, p, 0)
        if self.selected == 0:
            raise _Status(PERMISSION_DENIED)
        files = self._app()["files"]
        for fno, st in sorted(self._staged.items()):
            f = files.get(fno)
            if f is None:
                continue
            if "data" in st:
                f["data"] = bytearray(st["data"])
            if "delta" in st:
                f["value"] += st["delta"]
                if f["limited_credit_enabled"]:
                    if st["debited"]:
                        f["limited_credit"] = st["debited"]
                    elif st["limited"] or st["credited"]:
                        f["limited_credit"] = 0
            if st.get("clear"):
                f["records"] = []
            if "record" in st:
                recs = f["records"] + [bytes(st["record"])]
                keep = f["max_records"] - 1 if f["type"] == CYCLIC else f["max_records"]
                f["records"] = recs[-keep:]
        changed = bool(self._staged)
        self._staged = {}
        if changed:
            self._persist()
        return self._tx(b"")

    def _abort(self, cmd, p):
        self._simple(cmd, p, 0)
        self._staged = {}
        return self._tx(b"")

    # ---- inspection (tests, bench, `tapkit emulate card --show`) --------------------------------

    def value(self, aid, file_no):
        """The committed value of a value file (no protocol: the test's view into the EEPROM)."""
        return self.apps[aid]["files"][file_no]["value"]

    def records(self, aid, file_no):
        """Committed records of a record file, newest first."""
        return list(reversed(self.apps[aid]["files"][file_no]["records"]))
