"""`tapkit card`: the card office on a desk reader (issue, top up, show, block, unblock, refund)."""

import os
import sys
import time

from host_tools import UsageError
from host_tools.cli.output import console, print_json, table, when
from host_tools.cli.spec import DB, KEYSTORE, Command, arg, lazy_choices


def _office(a, ks):
    """The office journal the operation is recorded in (opened before any card is touched)."""
    from host_tools.cardoffice.journal import OfficeJournal

    return OfficeJournal.open(a.office or _default_office(), ks)


def _default_office():
    return os.environ.get("TAPKIT_OFFICE", "office.journal")


def _session(a, journal=False):
    from card_schema.desfire_admin import DESFireAdmin
    from host_tools import keystore
    from host_tools.cardoffice.readers import open_reader

    ks = keystore.load(a.keystore)
    j = _office(a, ks) if journal else None
    reader = open_reader(a.reader)
    trace = None
    if getattr(a, "trace", False):
        from card_schema.desfire_admin import status_name

        def trace(direction, data, name=""):
            # frames only: keys never travel in clear (authentication and ChangeKey are enciphered)
            note = name or ""
            if direction == "<" and len(data) >= 2 and data[-2] == 0x91:
                note += ": " + status_name(data[-1])
            sys.stderr.write("%s %s  %s\n" % (direction, data.hex(" ").upper(), note))
            sys.stderr.flush()

    df = DESFireAdmin(reader.transceive, wrapped=True, trace=trace)
    return (ks, reader, df, j) if journal else (ks, reader, df)


def _holders():
    from card_schema import citizen_host

    return citizen_host.HOLDER_NAMES


def _holder(name):
    return list(_holders()).index(name)  # argparse checked it


def issue(a):
    from host_tools.cardoffice import cardops

    ks, reader, df, journal = _session(a, journal=True)
    with reader:
        now = int(time.time())
        cardops.issue(
            df,
            ks,
            reader.uid,
            holder=_holder(a.holder),
            card_no=a.card_no,
            expiry=now + a.valid_days * 86400,
            balance=a.balance,
            now=now,
            journal=journal,
        )
        info = cardops.show(df, ks, reader.uid)
    return _show_card(a, info, "issued card")


def topup(a):
    if a.amount <= 0:
        raise UsageError("--amount must be a positive number of Rial")
    from host_tools.cardoffice import cardops

    ks, reader, df, journal = _session(a, journal=True)
    with reader:
        cardops.topup(df, ks, reader.uid, a.amount, now=int(time.time()), journal=journal)
        info = cardops.show(df, ks, reader.uid)
    return _show_card(a, info, "topped up %d Rial" % a.amount)


def show(a):
    from host_tools.cardoffice import cardops

    ks, reader, df = _session(a)
    with reader:
        info = cardops.show(df, ks, reader.uid)
    return _show_card(a, info, None)


def block(a):
    from host_tools.cardoffice import cardops

    ks, reader, df, journal = _session(a, journal=True)
    with reader:
        res = cardops.block(df, ks, reader.uid, blocked=a.sub == "block", journal=journal)
    if a.json:
        print_json(res)
    else:
        print(
            "card %s (UID %s) %s %s"
            % (
                res["card_no"],
                res["uid"].upper(),
                "is" if res["changed"] else "was already",
                res["status"],
            )
        )
    return 0


def refund(a):
    from host_tools.cardoffice import cardops

    ks, reader, df, journal = _session(a, journal=True)
    with reader:
        res = cardops.refund(df, ks, reader.uid, now=int(time.time()), journal=journal)
    if a.json:
        print_json(res)
    else:
        print(
            "card %s (UID %s) closed: blocked, %s Rial refunded%s"
            % (
                res["card_no"],
                res["uid"].upper(),
                format(res["refunded"], ","),
                " (refunded earlier)" if res["already"] else "",
            )
        )
    return 0


def secure(a):
    from host_tools.cardoffice import cardops

    ks, reader, df = _session(a)
    with reader:
        res = cardops.secure(df, ks, reader.uid)
    if a.json:
        print_json(res)
    else:
        print(
            "card %s (UID %s) %s"
            % (
                res["card_no"],
                res["uid"].upper(),
                "secured: " + ", ".join(res["done"]) if res["done"] else "was already secured",
            )
        )
    return 0


def _sig_text(sig, balance):
    """The issuer signature as terminals judge it (docs/architecture.md, "Stolen terminal")."""
    if sig is None:
        return "none: terminals refuse the card (run `tapkit card secure`)"
    if not sig["valid"]:
        return "not this issuer's: terminals refuse the card"
    text = "valid, ceiling %s Rial" % format(sig["ceiling"], ",")
    if balance is not None and balance > sig["ceiling"]:
        text += ": the balance is above it, terminals refuse the card"
    return text


def _show_card(a, info, headline):
    if a.json:
        print_json(info)
        return 0
    con = console()
    if headline:
        con.print(headline)
    shown = dict(info)
    for k in ("expiry", "issued"):
        if k in shown:
            shown[k] = when(shown[k])
    if "signature" in shown:
        shown["signature"] = _sig_text(info["signature"], info.get("balance"))
    if "balance" in shown:
        shown["balance"] = "%s Rial" % format(shown["balance"], ",")
    rows = [
        (k, shown[k])
        for k in (
            "uid",
            "card_no",
            "holder",
            "status",
            "issued",
            "expiry",
            "balance",
            "signature",
            "counter",
        )
        if k in shown
    ]
    con.print(table("card", ["field", "value"], rows))
    trips = info.get("trips") or []
    if trips:
        con.print(
            table(
                "last trips (newest first)",
                ["counter", "time", "kind", "terminal", "amount (Rial)", "balance (Rial)"],
                [
                    (
                        t["counter"],
                        when(t["time"]),
                        t["kind"],
                        t["terminal"],
                        format(t["amount"], ","),
                        format(t["balance_after"], ","),
                    )
                    for t in trips
                ],
            )
        )
    return 0


def readers(a):
    from host_tools.cardoffice.readers import survey

    rows = survey()
    if a.json:
        print_json({"readers": [r for r in rows if "reader" in r], "errors": _errors(rows)})
        return 0
    con = console()
    found = [r for r in rows if "reader" in r]
    if found:
        con.print(
            table(
                "desk readers",
                ["--reader", "name", "card"],
                [(r["reader"], r["name"], r["card"] or "-") for r in found],
                right=(),
            )
        )
    else:
        con.print("no desk reader found")
    for kind, e in _errors(rows).items():
        con.print("%s: %s" % (kind, e))
    return 0


def _errors(rows):
    return {r["kind"]: r["error"] for r in rows if "error" in r}


_ON_A_READER = (
    arg(
        "--reader",
        default="pcsc",
        help="pcsc[:NAME] | nfc:usb | nfc:udp[:HOST:PORT] | emulator:CARDFILE",
    ),
    KEYSTORE,
    arg("--trace", action="store_true", help="print every APDU on stderr"),
)
_OFFICE = arg(
    "--office",
    metavar="FILE",
    help="this office's journal: every operation is recorded in it "
    "(default $TAPKIT_OFFICE or office.journal; `tapkit office init` makes one)",
)


# --- tapkit office ------------------------------------------------------------------------------
def office_init(a):
    from host_tools.cardoffice.journal import OfficeJournal

    path = a.office or _default_office()
    OfficeJournal.init(path, a.id)
    if a.json:
        print_json({"journal": path, "office_id": a.id})
    else:
        print("office %d journal %s created" % (a.id, path))
    return 0


def office_sync(a):
    from host_tools import keystore
    from host_tools.backoffice import store as store_mod

    ks = keystore.load(a.keystore)
    journal = _office(a, ks)
    with store_mod.open_store(a.db) as db:
        res = journal.sync_into(db)
    if a.json:
        print_json(res)
    else:
        print(
            "office %(office)d: %(stored)d records stored (%(duplicates)d already there), "
            "store holds up to seq %(last_seq)d" % res
        )
    return 0


def office_show(a):
    from card_schema import taprecord_host
    from host_tools import keystore

    ks = keystore.load(a.keystore)
    journal = _office(a, ks)
    recs = [taprecord_host.to_dict(r) for r in journal.records()]
    if a.json:
        print_json({"office_id": journal.office_id, "records": recs})
        return 0
    cols = ["seq", "time", "kind", "card", "counter", "amount", "balance"]
    console().print(
        table(
            "office %d journal %s" % (journal.office_id, journal.path),
            cols,
            [
                (
                    r["seq"],
                    when(r["time"]),
                    r["kind"],
                    r["uid"],
                    r["counter"],
                    format(r["amount"], ","),
                    format(r["balance"], ","),
                )
                for r in recs[-a.last :]
            ],
        )
    )
    return 0


GROUPS = {
    "card": "card office: issue, top up, show, block, refund",
    "office": "the card office's journal: init, show, sync into the store",
}
COMMANDS = (
    Command(("readers",), readers, "the desk readers (PC/SC and nfcpy) and their cards", ()),
    Command(
        ("card", "issue"),
        issue,
        "personalise a blank card",
        _ON_A_READER
        + (
            _OFFICE,
            arg(
                "--holder",
                default="adult",
                choices=lazy_choices(_holders),
                metavar="TYPE",
                help="%(choices)s",
            ),
            arg("--balance", type=int, default=0, metavar="RIAL", help="initial balance in Rial"),
            arg("--card-no", type=int, default=0, metavar="N", help="the number printed on it"),
            arg("--valid-days", type=int, default=5 * 365, metavar="DAYS", help="valid for"),
        ),
    ),
    Command(
        ("card", "topup"),
        topup,
        "credit a card (credit key)",
        _ON_A_READER
        + (_OFFICE, arg("--amount", type=int, required=True, metavar="RIAL", help="Rial to add")),
    ),
    Command(("card", "show"), show, "holder, balance, last trips", _ON_A_READER),
    Command(
        ("card", "block"),
        block,
        "block a card (master key): terminals refuse it",
        _ON_A_READER + (_OFFICE,),
    ),
    Command(
        ("card", "unblock"),
        block,
        "unblock a blocked card (master key)",
        _ON_A_READER + (_OFFICE,),
    ),
    Command(
        ("card", "refund"),
        refund,
        "close a card: block it and pay out its balance (journalled as paid out)",
        _ON_A_READER + (_OFFICE,),
    ),
    Command(
        ("office", "init"),
        office_init,
        "start this office's journal (once per desk; the id is the operator's choice)",
        (arg("--id", type=int, required=True, metavar="N", help="office id, e.g. 9001"), _OFFICE),
    ),
    Command(
        ("office", "show"),
        office_show,
        "the newest records of the office journal",
        (
            _OFFICE,
            KEYSTORE,
            arg("--last", type=int, default=20, metavar="N", help="how many records to show"),
        ),
    ),
    Command(
        ("office", "sync"),
        office_sync,
        "store the office journal's records in the back office (idempotent)",
        (_OFFICE, KEYSTORE, DB),
    ),
    Command(
        ("card", "secure"),
        secure,
        "migrate a card issued by an older tapkit: card info for terminals only (MACed), the "
        "issuer's PICC key (FormatPICC needs it)",
        _ON_A_READER,
    ),
)
