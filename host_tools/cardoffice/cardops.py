"""Card-office operations on the citizen application: issue, top up, show, block.

Every function takes a connected `card_schema.desfire.DESFire` client, the issuer keystore (see
host_tools/keystore.py) and the card's UID (the keys are diversified per card). Card errors become one
`TapkitError` line the CLI can print.

    df = DESFireAdmin(reader.transceive)
    cardops.issue(df, ks, uid, holder="student", card_no=1001, expiry=1893456000, balance=50000)
    cardops.topup(df, ks, uid, 20000)             # -> 70000
    cardops.show(df, ks, uid)["balance"]          # 70000 (GetValue with the credit key)

Key use: issue uses the factory PICC key and the default (all-zero) keys of the fresh application,
then the new master and credit keys, and last puts the issuer's PICC key (diversified, AES) and PICC
key settings on the card (FormatPICC, CreateApplication and DeleteApplication need it from then on);
topup reads the card info with the master key, the trip log with the read key and credits with the
credit key; show reads the inspection copy of the card info and the trip log with the read key and
the purse with the credit key (the read key has no right on the purse). Card info itself is read by
terminals with the debit key (MACed in their session). `secure` migrates a card issued before that
(card info free to read, no inspection copy, the factory PICC key); topup does it on the way.
"""

import contextlib
import time

from card_schema import citizen, citizen_host, issuersig, issuersig_host, taprecord_host
from card_schema.desfire_admin import (
    APPLICATION_NOT_FOUND,
    AUTHENTICATION_ERROR,
    BOUNDARY_ERROR,
    DUPLICATE_ERROR,
    FILE_NOT_FOUND,
    MODE_ENC,
    MODE_MAC,
    RESPONSE_INTEGRITY,
    CardError,
)
from host_tools import TapkitError
from host_tools.keystore import card_key, issuer_key_id, issuer_public, issuer_sign, picc_key
from host_tools.cardoffice.readers import CardRemoved

# Application key settings: ChangeKey needs the master key (0x0_), configuration changeable (0x08),
# create/delete files needs the master key (no 0x04), free directory listing (0x02) so GetFileIDs and
# GetFileSettings work for diagnostics, master key changeable (0x01).
APP_KEY_SETTINGS = 0x0B
DEFAULT_KEY = bytes(16)
FACTORY_PICC_KEY = bytes(16)  # 2K3DES, all zero


class CardOpsError(TapkitError):
    """A card-office operation failed (the message says what to do)."""


class NotCitizenCard(CardOpsError):
    pass


class WrongKeys(CardOpsError):
    pass


class CardBlocked(CardOpsError):
    pass


UNCHANGED = "the card is unchanged (nothing was committed)"


class _Progress:
    """What a card-office operation has done so far, for the line printed when the card goes away."""

    def __init__(self, what):
        self.what = what
        self.state = UNCHANGED


@contextlib.contextmanager
def _removal(what):
    prog = _Progress(what)
    try:
        yield prog
    except CardRemoved as e:
        raise CardRemoved(f"card removed during {what}: {prog.state} ({e})")


def _fail(e, what):
    """Translate a CardError into one clear TapkitError line."""
    if e.status > 0xFF:  # an ISO status word: the card does not speak DESFire
        return NotCitizenCard(
            f"card is not a DESFire card (it answered ISO status {e.status:04X} to {what})"
        )
    if e.status == APPLICATION_NOT_FOUND:
        return NotCitizenCard(
            f"card is not a tapkit citizen card (application {citizen.AID:06X} not found)"
        )
    if e.status == RESPONSE_INTEGRITY:
        return CardOpsError(
            f"card answer failed its integrity check during {what}: hold the card still and retry"
        )
    return CardOpsError(f"card refused {what}: {e}")


def _select(df):
    try:
        df.select_application(citizen.AID)
    except CardError as e:
        raise _fail(e, "SelectApplication")


def _auth(df, key_no, key):
    role = citizen_host.ROLE_NAMES[key_no]
    try:
        df.authenticate_aes(key_no, key)
    except CardError as e:
        if e.status in (AUTHENTICATION_ERROR, RESPONSE_INTEGRITY):
            raise WrongKeys(
                f"wrong keys for this card (authentication with the {role} key failed): "
                "check the keystore and the card's UID"
            )
        raise _fail(e, f"authentication with the {role} key")


def _role_key(ks, key_no, uid):
    return card_key(ks, citizen_host.ROLE_NAMES[key_no], uid)


def _holder(holder):
    if isinstance(holder, str):
        try:
            return citizen_host.HOLDER_NAMES.index(holder)
        except ValueError:
            raise CardOpsError(
                "unknown holder type {!r}: one of {}".format(
                    holder, ", ".join(citizen_host.HOLDER_NAMES)
                )
            )
    if not 0 <= holder < len(citizen_host.HOLDER_NAMES):
        raise CardOpsError(f"unknown holder type {holder!r}")
    return holder


def _now(now):
    return int(time.time()) if now is None else int(now)


def trip_to_dict(raw, offset=0):
    t = citizen.unpack_trip(raw, offset)
    kind = t[citizen_host.TR_KIND]
    names = citizen_host.TRIP_KIND_NAMES
    return {
        "counter": t[citizen.TR_COUNTER],
        "time": t[citizen.TR_TIME],
        "terminal": t[citizen.TR_TERMINAL],
        "amount": t[citizen.TR_AMOUNT],
        "balance_after": t[citizen.TR_BALANCE],
        "line": t[citizen_host.TR_LINE],
        "stop": t[citizen_host.TR_STOP],
        "kind": names[kind] if kind < len(names) else str(kind),
        "profile": t[citizen_host.TR_PROFILE],
        "zone": t[citizen_host.TR_ZONE],
        "flags": t[citizen_host.TR_FLAGS],
    }


def _read_trips(df, count):
    """Trip records newest first (the caller authenticated with a key that may read them)."""
    try:
        return df.read_records(citizen.FILE_TRIPS, 0, count, citizen.TRIP_SIZE, MODE_MAC)
    except CardError as e:
        if e.status == BOUNDARY_ERROR:  # no record yet
            return b""
        raise _fail(e, "ReadRecords")


def _counter(df, ks, uid):
    """The card transaction counter (newest trip record's counter; 0 on a fresh card)."""
    _auth(df, citizen_host.KEY_READ, _role_key(ks, citizen_host.KEY_READ, uid))
    raw = _read_trips(df, 1)
    return citizen.unpack_trip(raw)[citizen.TR_COUNTER] if raw else 0


def _read_info(df, ks, uid, file_no=citizen.FILE_INFO):
    """The card info, read MACed in a master-key session (or, file_no the inspection copy, in the
    read-key session already open)."""
    if file_no == citizen.FILE_INFO:
        _auth(df, citizen_host.KEY_MASTER, _role_key(ks, citizen_host.KEY_MASTER, uid))
    try:
        raw = df.read_data(file_no, 0, citizen.INFO_SIZE, MODE_MAC)
    except CardError as e:
        raise _fail(e, "reading the card info")
    try:
        return citizen.unpack_card_info(raw)
    except ValueError:
        raise CardOpsError("card info on this card is damaged or of an unknown version")


def issue(df, ks, uid, holder, card_no, expiry, balance=0, now=None, journal=None):
    """Personalise a blank card: the citizen application, its keys, files and card info.
    `journal` (host_tools.cardoffice.journal.OfficeJournal): the issue is recorded in it.

    Returns {"uid", "card_no", "balance"}.
    """
    now = _now(now)
    holder = _holder(holder)
    if balance < 0 or balance > citizen_host.PURSE_UPPER:
        raise CardOpsError(f"initial balance must be 0..{citizen_host.PURSE_UPPER}")
    picc = picc_key(ks, uid)  # an old keystore is refused before the card is touched
    issuer_public(ks)  # and so is one without the issuer's signing key
    with _removal("issue") as prog:
        return _issue(df, ks, uid, holder, card_no, expiry, balance, now, prog, journal, picc)


def _issue(df, ks, uid, holder, card_no, expiry, balance, now, prog, journal=None, picc=None):
    partly = (
        "the card is partly personalised (the tapkit application exists but is not complete): "
        "format it before issuing it again"
    )
    step = "SelectApplication (PICC)"
    try:
        df.select_application(0)
        step = "authentication with the factory PICC key"
        if not _picc_auth(df, picc):
            # another PICC key: go on unauthenticated (the card's PICC key settings decide
            # whether anyone may create an application)
            df.select_application(0)
        step = "CreateApplication"
        prog.state = partly
        try:
            df.create_application(citizen.AID, APP_KEY_SETTINGS, citizen_host.KEY_COUNT, aes=True)
        except CardError as e:
            if e.status == DUPLICATE_ERROR:
                raise CardOpsError(
                    f"card already has a tapkit application ({citizen.AID:06X}): it is issued already"
                )
            raise
        step = "SelectApplication"
        df.select_application(citizen.AID)
        step = "authentication with the default key"
        df.authenticate_aes(citizen_host.KEY_MASTER, DEFAULT_KEY)
        for file_no, comm, r, w, rw, car in citizen_host.FILE_RIGHTS:
            ar = citizen_host.access_rights(r, w, rw, car)
            step = f"creating file {file_no}"
            if file_no in (citizen.FILE_INFO, citizen_host.FILE_INFO_COPY):
                df.create_std_data_file(file_no, comm, ar, citizen.INFO_SIZE)
            elif file_no == issuersig_host.FILE_SIG:
                df.create_std_data_file(file_no, comm, ar, issuersig_host.SIZE)
            elif file_no == citizen.FILE_PURSE:
                df.create_value_file(
                    file_no, comm, ar, citizen_host.PURSE_LOWER, citizen_host.PURSE_UPPER, 0, True
                )
            else:
                df.create_cyclic_record_file(
                    file_no, comm, ar, citizen.TRIP_SIZE, citizen_host.TRIP_RECORDS
                )
        # EV1: the other keys change while authenticated with the master key (new XOR old, CRC of
        # the new key); the master key changes last because changing it ends the session
        for key_no in (
            citizen.KEY_DEBIT,
            citizen_host.KEY_CREDIT,
            citizen_host.KEY_READ,
            citizen_host.KEY_MASTER,
        ):
            step = f"ChangeKey {key_no}"
            df.change_key(key_no, _role_key(ks, key_no, uid), DEFAULT_KEY, version=1)
    except CardError as e:
        raise _fail(e, step)
    info = citizen_host.pack_card_info(holder, card_no, ks["issuer_id"], now, int(expiry))
    _auth(df, citizen_host.KEY_MASTER, _role_key(ks, citizen_host.KEY_MASTER, uid))
    try:
        df.write_data(citizen.FILE_INFO, 0, info, MODE_MAC)
        df.write_data(citizen_host.FILE_INFO_COPY, 0, info, MODE_MAC)
        _write_sig(df, ks, uid, balance)  # the ceiling before the value: never a value above it
    except CardError as e:
        raise _fail(e, "writing the card info")
    prog.state = "the card is issued but its PICC key may still be the factory key: run `tapkit card secure`"
    _secure_picc(df, picc, [])
    prog.state = "the card is issued and secured"
    _select(df)
    if balance:
        prog.state = (
            "the card is issued, but the initial balance may not be on it: "
            "check it with `tapkit card show` and top it up"
        )
        _credit(df, ks, uid, balance, 0, 0, now, prog, journal, taprecord_host.KIND_ISSUE)
    elif journal is not None:
        journal.append(taprecord_host.KIND_ISSUE, uid, 0, 0, 0, now=now)
    return {"uid": bytes(uid).hex(), "card_no": card_no, "balance": balance}


def _picc_auth(df, picc):
    """Authenticate at PICC level (selected) with the issuer's PICC key, else the factory key.
    Returns "issuer", "factory", or None (neither: the card is not this issuer's to manage)."""
    for name, auth, key in (
        ("issuer", df.authenticate_aes, picc),
        ("factory", df.authenticate_iso, FACTORY_PICC_KEY),
    ):
        try:
            auth(0, key)
            return name
        except CardError as e:
            if e.status not in (AUTHENTICATION_ERROR, RESPONSE_INTEGRITY):
                raise
            df.select_application(0)
    return None


def _secure_picc(df, picc, done):
    """The issuer's PICC key and PICC key settings on the card (each step skipped when done)."""
    step = "SelectApplication (PICC)"
    try:
        df.select_application(0)
        step = "authentication at PICC level"
        who = _picc_auth(df, picc)
        if who is None:
            raise CardOpsError(
                "the card's PICC master key is neither the factory key nor this issuer's: "
                "it cannot be secured with this keystore"
            )
        if who == "factory":
            step = "ChangeKey (PICC master key)"
            df.change_picc_key(picc, aes=True, version=1)  # ends the session
            done.append("picc key")
            step = "authentication with the new PICC key"
            df.authenticate_aes(0, picc)
        step = "GetKeySettings (PICC)"
        if df.get_key_settings()[0] != citizen_host.PICC_KEY_SETTINGS:
            step = "ChangeKeySettings (PICC)"
            df.change_key_settings(citizen_host.PICC_KEY_SETTINGS)
            done.append("picc key settings")
    except CardError as e:
        raise _fail(e, step)
    return done


def _secure_app(df, ks, uid, done):
    """Card info readable by the debit key only (MACed in the terminal's session) and its
    inspection copy for the read key (each step skipped when done)."""
    _select(df)
    _auth(df, citizen_host.KEY_MASTER, _role_key(ks, citizen_host.KEY_MASTER, uid))
    step = "reading the card info"
    try:
        raw = df.read_data(citizen.FILE_INFO, 0, citizen.INFO_SIZE, MODE_MAC)
        step = "GetFileSettings"
        want = {f[0]: f for f in citizen_host.FILE_RIGHTS}
        _, comm, r, w, rw, car = want[citizen.FILE_INFO]
        s = df.get_file_settings(citizen.FILE_INFO)
        if (s["read"], s["write"], s["read_write"], s["change"]) != (r, w, rw, car):
            step = "ChangeFileSettings (card info)"
            df.change_file_settings(
                citizen.FILE_INFO, comm, citizen_host.access_rights(r, w, rw, car)
            )
            done.append("card info rights")
        step = "GetFileIDs"
        copy_no = citizen_host.FILE_INFO_COPY
        if copy_no not in df.get_file_ids():
            _, comm, r, w, rw, car = want[copy_no]
            step = "creating the inspection copy"
            df.create_std_data_file(
                copy_no, comm, citizen_host.access_rights(r, w, rw, car), citizen.INFO_SIZE
            )
            done.append("inspection copy")
        step = "writing the inspection copy"
        if df.read_data(copy_no, 0, citizen.INFO_SIZE, MODE_MAC) != raw:
            df.write_data(copy_no, 0, raw, MODE_MAC)
    except CardError as e:
        raise _fail(e, step)
    return done


def _write_sig(df, ks, uid, ceiling):
    """The issuer's signature over UID and ceiling into the card's file 0x05 (the caller has
    authenticated with the master key)."""
    raw = issuersig_host.pack(uid, ceiling, issuer_key_id(ks), lambda d: issuer_sign(ks, d))
    df.write_data(issuersig_host.FILE_SIG, 0, raw, MODE_MAC)


def _sig_file(df, done):
    """Create the signature file on a card issued before cards were signed (master key
    authenticated); True when it was there."""
    if issuersig_host.FILE_SIG in df.get_file_ids():
        return True
    _, comm, r, w, rw, car = {f[0]: f for f in citizen_host.FILE_RIGHTS}[issuersig_host.FILE_SIG]
    df.create_std_data_file(
        issuersig_host.FILE_SIG,
        comm,
        citizen_host.access_rights(r, w, rw, car),
        issuersig_host.SIZE,
    )
    done.append("signature file")
    return False


def read_sig(df, ks, uid):
    """The card's issuer signature as the terminals check it: {"valid", "ceiling"}, or None when
    the card has no signature file (issued before cards were signed: `tapkit card secure`)."""
    _select(df)
    _auth(df, citizen.KEY_DEBIT, _role_key(ks, citizen.KEY_DEBIT, uid))
    try:
        raw = df.read_data(issuersig_host.FILE_SIG, 0, issuersig_host.SIZE, MODE_MAC)
    except CardError as e:
        if e.status == FILE_NOT_FOUND:
            return None
        raise _fail(e, "reading the issuer signature")
    ceiling = issuersig.check(issuer_public(ks), bytes(uid), raw)
    return {"valid": ceiling >= 0, "ceiling": issuersig_host.unpack(raw)[2]}


def _secure_sig(df, ks, uid, done):
    """The issuer's signature with the card's balance as its ceiling, on a card without a valid
    one; a card whose balance is above its valid signature's ceiling is refused (its value was
    raised outside the card office: the ledger's `minted` finding says by how much)."""
    sig = read_sig(df, ks, uid)
    balance = read_balance(df, ks, uid)
    if sig and sig["valid"] and balance > sig["ceiling"]:
        raise CardOpsError(
            f"card balance {balance} is above its signed ceiling {sig['ceiling']}: value was "
            "added outside the card office; the card is not signed again (see `tapkit audit`)"
        )
    if sig and sig["valid"]:
        return done
    _select(df)
    _auth(df, citizen_host.KEY_MASTER, _role_key(ks, citizen_host.KEY_MASTER, uid))
    step = "creating the signature file"
    try:
        _sig_file(df, done)
        step = "writing the issuer signature"
        _write_sig(df, ks, uid, balance)
    except CardError as e:
        raise _fail(e, step)
    done.append("issuer signature")
    return done


def secure(df, ks, uid):
    """Bring a card issued before tapkit secured cards up to date: card info read by terminals with
    the debit key only (MACed: a relay cannot rewrite holder type, status or expiry), its copy for
    inspection (read key), and the issuer's PICC master key (AES, diversified) with PICC key
    settings under which FormatPICC, CreateApplication and DeleteApplication need it. Every step is
    checked first and skipped when done: safe to run again, and after an interruption.

    Returns {"uid", "card_no", "done": [the steps done now], "secured": True}."""
    picc = picc_key(ks, uid)
    issuer_public(ks)
    with _removal("card secure") as prog:
        prog.state = "the card may be partly secured: run `tapkit card secure` again"
        done = _secure_app(df, ks, uid, [])
        _secure_sig(df, ks, uid, done)
        _secure_picc(df, picc, done)
        _select(df)
        info = _read_info(df, ks, uid)
    return {
        "uid": bytes(uid).hex(),
        "card_no": info[citizen_host.CI_CARD_NO],
        "done": done,
        "secured": True,
    }


def _commit(df, journal, kind, uid, counter, amount, balance, now):
    """Journal the staged card change (durable), then commit it; a commit the card refuses is
    voided in the journal, one that answers is confirmed, a lost answer leaves it unconfirmed
    (the ledger settles it by the card's later state)."""
    seq = journal.append(kind, uid, counter, amount, balance, now=now) if journal else None
    try:
        df.commit_transaction()
    except CardError:
        if seq is not None:
            journal.void(seq, uid, counter, now=now)
        raise
    if seq is not None:
        journal.confirm(seq, uid, counter, balance, now=now)
    return seq


def _credit(df, ks, uid, amount, counter, terminal_id, now, prog, journal=None, kind=None):
    _auth(df, citizen_host.KEY_CREDIT, _role_key(ks, citizen_host.KEY_CREDIT, uid))
    step = "GetValue"
    try:
        before = df.get_value(citizen.FILE_PURSE, MODE_ENC)
        after = before + amount
        if after > citizen_host.PURSE_UPPER:
            raise CardOpsError(
                f"top-up refused: balance {before} + {amount} exceeds the purse limit {citizen_host.PURSE_UPPER}"
            )
        step = "Credit"
        df.credit(citizen.FILE_PURSE, amount, MODE_ENC)
        if journal is not None:
            terminal_id = journal.office_id  # the card's trip log names the office
        trip = citizen_host.pack_trip(
            counter + 1, now, terminal_id, amount, after, kind=citizen_host.TRIP_CREDIT
        )
        step = "WriteRecord"
        df.write_record(citizen.FILE_TRIPS, 0, trip, MODE_MAC)
        step = "CommitTransaction"
        before_commit = prog.state
        prog.state = (
            f"the card may or may not have taken the credit of {amount} Rial "
            "(the commit's answer was lost): check it with `tapkit card show` before retrying"
        )
        _commit(
            df,
            journal,
            kind or taprecord_host.KIND_TOPUP,
            uid,
            counter + 1,
            amount,
            after,
            now,
        )
        prog.state = f"the credit of {amount} Rial is on the card (committed)"
    except CardError as e:
        if step == "CommitTransaction":
            prog.state = before_commit
        if e.status == BOUNDARY_ERROR and step == "Credit":
            raise CardOpsError("top-up refused by the card: the purse limit would be exceeded")
        raise _fail(e, step)
    return after


def topup(df, ks, uid, amount, terminal_id=0, now=None, journal=None):
    """Credit `amount` Rial (credit key) with a credit trip record, in one transaction; returns the
    new balance. Blocked cards are refused. `journal`: the top-up is recorded in it."""
    if amount <= 0:
        raise CardOpsError("top-up amount must be positive")
    now = _now(now)
    picc = picc_key(ks, uid) if "picc" in ks["keys"] else None
    issuer_public(ks)  # the new ceiling is signed: refused before the card is touched without
    with _removal("top-up") as prog:
        if picc is not None:  # a card issued before tapkit secured cards is migrated first
            _secure_picc(df, picc, _secure_app(df, ks, uid, []))
        _select(df)
        info = _read_info(df, ks, uid)
        if info[citizen.CI_STATUS] == citizen.STATUS_BLOCKED:
            raise CardBlocked(
                f"card {info[citizen_host.CI_CARD_NO]} is blocked: it cannot be topped up"
            )
        counter = _counter(df, ks, uid)
        before = read_balance(df, ks, uid)
        if before + amount > citizen_host.PURSE_UPPER:
            raise CardOpsError(
                f"top-up refused: balance {before} + {amount} exceeds the purse limit {citizen_host.PURSE_UPPER}"
            )
        # the new ceiling goes on the card before the value: a top-up cut in between leaves a
        # ceiling above the balance (a bound, not value), never a balance above its ceiling
        _select(df)
        _auth(df, citizen_host.KEY_MASTER, _role_key(ks, citizen_host.KEY_MASTER, uid))
        step = "creating the signature file"
        try:
            _sig_file(df, [])
            step = "writing the issuer signature"
            _write_sig(df, ks, uid, before + amount)
        except CardError as e:
            raise _fail(e, step)
        prog.state = (
            "the balance is unchanged (nothing was committed; the card's signed ceiling already "
            "allows this top-up)"
        )
        return _credit(df, ks, uid, amount, counter, terminal_id, now, prog, journal)


def read_balance(df, ks, uid):
    """The purse value, read with the credit key (GetValue, enciphered)."""
    _select(df)
    _auth(df, citizen_host.KEY_CREDIT, _role_key(ks, citizen_host.KEY_CREDIT, uid))
    try:
        return df.get_value(citizen.FILE_PURSE, MODE_ENC)
    except CardError as e:
        raise _fail(e, "GetValue")


def show(df, ks, uid):
    """Everything the card office sees about a card, as a dict (trips newest first)."""
    with _removal("show"):
        return _show(df, ks, uid)


def _show(df, ks, uid):
    _select(df)
    df.select_application(0)
    try:  # free directory listing: the PICC key type (AES once issued by tapkit)
        picc = "issuer" if df.get_key_settings()[1] & 0x80 else "factory"
    except CardError:
        picc = "unknown"
    _select(df)
    _auth(df, citizen_host.KEY_READ, _role_key(ks, citizen_host.KEY_READ, uid))
    try:  # the inspection copy (read key); a card not yet secured has its card info free to read
        info = _read_info(df, ks, uid, citizen_host.FILE_INFO_COPY)
        secured = picc == "issuer"
    except CardOpsError:
        info = _read_info(df, ks, uid)  # no copy: not secured yet (the master key reads it)
        secured = False
        _auth(df, citizen_host.KEY_READ, _role_key(ks, citizen_host.KEY_READ, uid))
    raw = _read_trips(df, 0)
    trips = [trip_to_dict(raw, i) for i in range(0, len(raw), citizen.TRIP_SIZE)]
    balance = read_balance(df, ks, uid)
    sig = read_sig(df, ks, uid) if "sign" in ks else None
    holder = info[citizen_host.CI_HOLDER]
    status = info[citizen.CI_STATUS]
    return {
        "uid": bytes(uid).hex(),
        "card_no": info[citizen_host.CI_CARD_NO],
        "holder": citizen_host.HOLDER_NAMES[holder]
        if holder < len(citizen_host.HOLDER_NAMES)
        else holder,
        "status": "blocked" if status == citizen.STATUS_BLOCKED else "active",
        "issuer_id": info[citizen_host.CI_ISSUER],
        "issued": info[citizen_host.CI_ISSUED],
        "expiry": info[citizen.CI_EXPIRY],
        "balance": balance,
        "balance_key": "credit",
        "signature": sig,
        "counter": trips[0]["counter"] if trips else 0,
        "trips": trips,
        "secured": secured,
    }


def block(df, ks, uid, blocked=True, journal=None, now=None):
    """Set the card info status to blocked (or back to active) with the master key.

    Returns {"uid", "card_no", "status", "changed"}; blocking a blocked card changes nothing.
    `journal`: a change is recorded in it with the card's counter and balance."""
    with _removal("block" if blocked else "unblock") as prog:
        _select(df)
        info = _read_info(df, ks, uid)
        return _set_status(df, ks, uid, info, blocked, prog, journal, _now(now))


def _set_status(df, ks, uid, info, blocked, prog, journal=None, now=None):
    status = citizen.STATUS_BLOCKED if blocked else citizen_host.STATUS_ACTIVE
    res = {
        "uid": bytes(uid).hex(),
        "card_no": info[citizen_host.CI_CARD_NO],
        "status": "blocked" if blocked else "active",
        "changed": info[citizen.CI_STATUS] != status,
    }
    if not res["changed"]:
        return res
    new = citizen_host.pack_card_info(
        info[citizen_host.CI_HOLDER],
        info[citizen_host.CI_CARD_NO],
        info[citizen_host.CI_ISSUER],
        info[citizen_host.CI_ISSUED],
        info[citizen.CI_EXPIRY],
        status,
    )
    _auth(df, citizen_host.KEY_MASTER, _role_key(ks, citizen_host.KEY_MASTER, uid))
    prog.state = (
        "the card may or may not be %s (its answer was lost): check it with `tapkit card show`"
        % res["status"]
    )
    try:
        df.write_data(citizen.FILE_INFO, 0, new, MODE_MAC)
        if citizen_host.FILE_INFO_COPY in df.get_file_ids():  # a card not secured has none yet
            df.write_data(citizen_host.FILE_INFO_COPY, 0, new, MODE_MAC)
    except CardError as e:
        raise _fail(e, "writing the card info")
    prog.state = "the card is %s" % res["status"]
    if journal is not None:
        counter = _counter(df, ks, uid)
        balance = read_balance(df, ks, uid)
        kind = taprecord_host.KIND_BLOCK if blocked else taprecord_host.KIND_UNBLOCK
        journal.append(kind, uid, counter, 0, balance, now=now)
        res["counter"], res["balance"] = counter, balance
    return res


def refund(df, ks, uid, terminal_id=0, now=None, journal=None):
    """Close the card: block it, then debit the whole remaining balance with a refund trip record
    (credit key, one transaction), so the card and the books agree on what was paid out.

    Returns {"uid", "card_no", "refunded", "balance", "status", "counter", "already"}. Safe to run
    again after an interruption: a closed card (blocked, balance 0, newest trip a refund) reports
    the refund it already had (`already` true) and changes nothing. `journal`: the block and the
    pay-out (kind payout: what was paid out) are recorded in it.
    """
    now = _now(now)
    with _removal("refund") as prog:
        _select(df)
        info = _read_info(df, ks, uid)
        _set_status(df, ks, uid, info, True, prog, journal, now)
        if journal is not None:
            terminal_id = journal.office_id
        prog.state = (
            "the card is blocked, but its balance is not refunded yet: run the refund again"
        )
        _auth(df, citizen_host.KEY_READ, _role_key(ks, citizen_host.KEY_READ, uid))
        raw = _read_trips(df, 1)
        last = trip_to_dict(raw) if raw else None
        counter = last["counter"] if last else 0
        _auth(df, citizen_host.KEY_CREDIT, _role_key(ks, citizen_host.KEY_CREDIT, uid))
        step = "GetValue"
        try:
            balance = df.get_value(citizen.FILE_PURSE, MODE_ENC)
            res = {
                "uid": bytes(uid).hex(),
                "card_no": info[citizen_host.CI_CARD_NO],
                "status": "blocked",
                "balance": 0,
                "refunded": balance,
                "counter": counter,
                "already": False,
            }
            if balance == 0:
                if last and last["kind"] == "refund":
                    res["refunded"] = last["amount"]
                    res["already"] = True
                return res
            step = "Debit"
            df.debit(citizen.FILE_PURSE, balance, MODE_ENC)
            trip = citizen_host.pack_trip(
                counter + 1, now, terminal_id, balance, 0, kind=citizen_host.TRIP_REFUND
            )
            step = "WriteRecord"
            df.write_record(citizen.FILE_TRIPS, 0, trip, MODE_MAC)
            step = "CommitTransaction"
            prog.state = (
                "the card is blocked; the refund of %d Rial may or may not be committed (the "
                "commit's answer was lost): run the refund again, it pays out only what is left"
                % balance
            )
            _commit(df, journal, taprecord_host.KIND_PAYOUT, uid, counter + 1, balance, 0, now)
        except CardError as e:
            raise _fail(e, step)
        res["counter"] = counter + 1
        return res
