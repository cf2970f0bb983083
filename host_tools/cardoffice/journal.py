"""The card office's journal: every card-office operation as a MAC-chained record, like a terminal's.

    OfficeJournal.init("office.journal", office_id=9001)     # once per office desk (refuses a file)
    j = OfficeJournal.open("office.journal", ks)              # ks: the issuer keystore
    seq = j.append(KIND_TOPUP, uid, counter=7, amount=50000, balance=120000)   # before the commit
    j.confirm(seq)                                            # after CommitTransaction answered
    j.records(from_seq=1)                                     # raw 64-byte records, for the store

An office is a source of the back office like a terminal, maybe offline: it has its own id (in the
same id space as terminals; the operator assigns it, e.g. 9001 for the main office, and `tapkit
office init` writes it into the journal's header) and its own key, derived from the issuer's
journal master key under another label than a terminal's (host_tools.keystore.office_key): a
terminal whose key was read out of its flash cannot forge a top-up, and an office record never
verifies as a terminal's. The records are card_schema.taprecord records (profile "office", the
office kinds of card_schema.taprecord_host), so they sync into the same store, idempotently by
(office id, seq), with the same MAC chain checks: `tapkit office sync --db URL` (store.ingest with
role "office"; the audit and the ledger then treat them like any source's).

What each operation writes (counter and balance: the card's after it; amount: what it moved):
    issue    counter 1 and the initial balance (counter 0, amount 0 without one)
    topup    counter + 1, the amount credited, the new balance
    payout   `card refund`: counter + 1, the balance paid out, balance 0 (after a block record)
    block / unblock   the card's counter and balance, amount 0
Money records are written after the card change is staged and before CommitTransaction (as on a
terminal): a cut in between leaves a record the card never committed, which the ledger sees. A
CONFIRM record (amount = the seq) follows a commit that answered; a VOID follows one the card
refused; a lost answer leaves the record unconfirmed until the card's later state settles it.

File: a 64-byte header (magic "TKOFFICE", version, office id, created, CRC-32), then 64-byte
records. Appends take an exclusive lock (two desks on one file append in turn) and are fsynced
before the card is committed. A torn last record (a power cut while writing it) fails its CRC and is
cut off at open: its operation never reached the card's commit. Any other damage refuses to open.
"""

import binascii
import fcntl
import os
import struct
import time

from card_schema import profile_host, taprecord, taprecord_host
from host_tools import TapkitError, keystore

MAGIC = b"TKOFFICE"
VERSION = 1
HEAD = 64
_HEAD_FMT = "<8sBxxxII40s"  # magic, version, office id, created, reserved; then crc32
RESULT_CARD_ERROR = taprecord_host.RESULT_CARD_ERROR


class JournalError(TapkitError):
    pass


def _head(office_id, created):
    body = struct.pack(_HEAD_FMT, MAGIC, VERSION, office_id, created, bytes(40))
    return body + struct.pack("<I", binascii.crc32(body) & 0xFFFFFFFF)


class OfficeJournal:
    def __init__(self, path, office_id, key, created):
        self.path = path
        self.office_id = office_id
        self.key = key
        self.created = created
        self._buf = bytearray(taprecord.SIZE)

    @staticmethod
    def init(path, office_id):
        """Create a new journal for office `office_id` (1..2^32-1); refuses an existing file."""
        if not 0 < int(office_id) < 2**32:
            raise JournalError("an office id is a number from 1 to 4294967295")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise JournalError(f"office journal {path} already exists: refusing to start another")
        except OSError as e:
            raise JournalError(f"cannot create the office journal {path}: {e.strerror}")
        with os.fdopen(fd, "wb") as f:
            f.write(_head(int(office_id), int(time.time())))
            f.flush()
            os.fsync(f.fileno())
        return path

    @classmethod
    def open(cls, path, ks):
        """Open a journal (recovering a torn last record) with the office key from `ks`."""
        try:
            with open(path, "rb") as f:
                head = f.read(HEAD)
        except FileNotFoundError:
            raise JournalError(
                f"no office journal at {path}: every card-office operation is journalled; "
                "create it once with `tapkit office init --id N` (N: this office's id)"
            )
        except OSError as e:
            raise JournalError(f"cannot read the office journal {path}: {e.strerror}")
        if (
            len(head) != HEAD
            or head[:8] != MAGIC
            or struct.unpack_from("<I", head, 60)[0] != binascii.crc32(head[:60]) & 0xFFFFFFFF
        ):
            raise JournalError(f"{path} is not a tapkit office journal (bad header)")
        _m, version, office_id, created, _r = struct.unpack_from(_HEAD_FMT, head, 0)
        if version != VERSION:
            raise JournalError(f"office journal {path} has version {version}, not {VERSION}")
        j = cls(path, office_id, keystore.office_key(ks, office_id), created)
        with j._locked("r+b") as f:
            j._recover(f)
        return j

    # ---- file ----------------------------------------------------------------------------------

    def _locked(self, mode):
        journal = self

        class _Lock:
            def __enter__(self):
                self.f = open(journal.path, mode)
                fcntl.flock(self.f.fileno(), fcntl.LOCK_EX)
                return self.f

            def __exit__(self, *exc):
                fcntl.flock(self.f.fileno(), fcntl.LOCK_UN)
                self.f.close()

        return _Lock()

    def _read_all(self, f):
        f.seek(HEAD)
        data = f.read()
        return [data[i : i + taprecord.SIZE] for i in range(0, len(data), taprecord.SIZE)]

    def _recover(self, f):
        """Cut a torn tail; check the rest (CRC, seq order, MAC chain). Returns the records."""
        recs = self._read_all(f)
        good = len(recs)
        if recs and (len(recs[-1]) != taprecord.SIZE or not taprecord.crc_ok(recs[-1])):
            good -= 1  # torn while written: its operation never reached the card's commit
        prev = taprecord.GENESIS_MAC
        for i, raw in enumerate(recs[:good]):
            if not taprecord.crc_ok(raw) or taprecord.seq_of(raw) != i + 1:
                raise JournalError(f"office journal {self.path} is damaged at record {i + 1}")
            if not taprecord.mac_ok(raw, prev, self.key):
                raise JournalError(
                    f"office journal {self.path}: MAC chain broken at seq {i + 1} (altered, or "
                    "not this office's key: check --keystore)"
                )
            prev = raw[taprecord.BODY : taprecord.BODY + 8]
        if good < len(recs):
            f.truncate(HEAD + good * taprecord.SIZE)
            f.flush()
            os.fsync(f.fileno())
        return recs[:good]

    # ---- writing -------------------------------------------------------------------------------

    def append(self, kind, uid, counter=0, amount=0, balance=-1, result=0, now=None):
        """Append one record (durable when this returns); returns its seq."""
        with self._locked("r+b") as f:
            recs = self._read_all(f)
            seq = len(recs) + 1
            prev = recs[-1][taprecord.BODY : taprecord.BODY + 8] if recs else taprecord.GENESIS_MAC
            taprecord.pack_into(
                self._buf,
                prev,
                self.key,
                seq=seq,
                time=int(time.time()) if now is None else int(now),
                terminal=self.office_id,
                uid=bytes(uid),
                kind=kind,
                result=result,
                profile=profile_host.OFFICE,
                counter=counter,
                amount=amount,
                balance=balance,
            )
            f.seek(HEAD + (seq - 1) * taprecord.SIZE)
            f.write(bytes(self._buf))
            f.flush()
            os.fsync(f.fileno())
        return seq

    def confirm(self, seq, uid, counter, balance, now=None):
        """The card committed the money record `seq` (its commit answered)."""
        return self.append(
            taprecord_host.KIND_CONFIRM,
            uid,
            counter,
            seq,
            balance,
            taprecord_host.RESULT_COMMIT_ANSWER,
            now,
        )

    def void(self, seq, uid, counter, now=None):
        """The card refused the commit of the money record `seq`: no money moved."""
        return self.append(taprecord.KIND_VOID, uid, counter, seq, -1, RESULT_CARD_ERROR, now)

    # ---- reading -------------------------------------------------------------------------------

    def records(self, from_seq=1):
        with self._locked("rb") as f:
            recs = self._read_all(f)
        return [r for r in recs if len(r) == taprecord.SIZE][max(0, from_seq - 1) :]

    def head_seq(self):
        return len(self.records())

    def info(self):
        return {"office_id": self.office_id, "journal": self.path, "head_seq": self.head_seq()}

    # ---- into the store --------------------------------------------------------------------------

    def sync_into(self, store, batch=1000):
        """Store what the back office lacks (store: host_tools.backoffice.store.Store; idempotent:
        from its last seq of this office on, the chain checked into each batch). Returns a summary."""
        recs = self.records()
        last = store.last_seq(self.office_id)
        if last > len(recs):
            raise JournalError(
                f"the store holds office {self.office_id} up to seq {last} but {self.path} only "
                f"up to seq {len(recs)}: another journal with this office id?"
            )
        stored = dups = 0
        start = max(0, last - 1)  # re-send the last stored one: the store checks it is the same
        for i in range(start, len(recs), batch):
            ins, dup = store.ingest(self.office_id, recs[i : i + batch], self.key, role="office")
            stored += ins
            dups += dup
        store.note_sync(
            self.office_id,
            {"journal": os.path.abspath(self.path), "head_seq": len(recs)},
            len(recs),
            via="file",
            role="office",
        )
        return {
            "office": self.office_id,
            "head_seq": len(recs),
            "stored": stored,
            "duplicates": dups,
            "last_seq": store.last_seq(self.office_id),
        }
