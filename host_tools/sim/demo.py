"""The demo as data: the virtual fleet end to end, on the embedded defaults (`tapkit demo` renders it).

1. issuer keys and three emulated citizen cards with balances (card files), issued by card office
   9001, whose journal records each issue;
2. one virtual bus terminal: the firmware on the MicroPython unix port (ESP32-sized heap), its PN532 an
   emulator on a virtual UART, its journal a file-backed NOR flash, its USB serial a pty;
3. taps (several per card; one card runs out of balance and is refused);
4. the sync pulls the taps over the pty (fleet.sync, as `tapkit sync --port <pty>` does), and the
   office journal goes into the same store (`tapkit office sync`);
5. the report, and the balances read back from the cards checked against the ledger.

    for kind, data in run("demo-run"):      # ("step", text), ("card", {...}), ("tap", {...}), ...
        ...

Steps, in order: ("title", text); ("step", text) opens each of the five parts; ("card", {name, holder,
balance, path}); ("port", pty path); ("tap", {card, n, buzzer, display}); ("sync", {port, db,
summary}); ("report", report dict); ("cards", [row]: each card's balance read back vs the ledger);
("done", {report, cards}). When a balance disagrees, run raises TapkitError after the "cards" step.
"""

import os
import shutil
import time

from host_tools import TapkitError

CARDS = (  # name, holder, initial balance (Rial), taps (student 50%, senior 30% of the fare)
    ("alice", "adult", 200000, 3),
    ("bahram", "student", 100000, 2),
    ("cyrus", "senior", 10000, 2),
)
TERMINAL_ID = 1001
FARE = 25000
LINE = 12
OFFICE_ID = 9001  # the card office that issues the cards (its journal syncs with the taps)


def run(workdir="demo-run", heap="112K", progress=None):
    """Run the demo in `workdir` (replaced); yields its steps. `progress(done, total)`: the sync's."""
    from card_schema import citizen_host
    from card_schema.desfire_admin import DESFireAdmin
    from emulator.vboard import BoardError, VirtualBoard
    from host_tools import keystore
    from host_tools.backoffice import audit, report, store
    from host_tools.cardoffice import cardops
    from host_tools.cardoffice.journal import OfficeJournal
    from host_tools.cardoffice.readers import EmulatorReader
    from host_tools.fleet.link import SerialLink
    from host_tools.fleet.sync import sync_terminal
    from host_tools.sim.virtual import deploy_virtual, new_emulated_card

    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    ks_path = os.path.join(workdir, "issuer.keys")
    db_url = "sqlite:///" + os.path.join(workdir, "taps.db")

    yield "title", "tapkit demo: one bus, three citizen cards"
    yield "step", "[1/5] issuer keys and cards"
    ks = keystore.init(ks_path, issuer_id=1)
    # the card office that issues them journals it (office 9001; synced with the taps)
    office_path = os.path.join(workdir, "office.journal")
    OfficeJournal.init(office_path, OFFICE_ID)
    office = OfficeJournal.open(office_path, ks)
    cards = []
    now = int(time.time())
    for i, (name, holder, balance, _) in enumerate(CARDS):
        path = os.path.join(workdir, name + ".card")
        new_emulated_card(
            path,
            ks,
            holder=citizen_host.HOLDER_NAMES.index(holder),
            card_no=100 + i,
            expiry=now + 365 * 86400,
            balance=balance,
            now=now,
            journal=office,
        )
        cards.append((name, holder, balance, path))
        yield "card", {"name": name, "holder": holder, "balance": balance, "path": path}

    yield (
        "step",
        "[2/5] virtual bus terminal %d (line %d, fare %s Rial), firmware on MicroPython, heap %s"
        % (TERMINAL_ID, LINE, format(FARE, ","), heap),
    )
    state = os.path.join(workdir, "bus-%d" % TERMINAL_ID)
    os.makedirs(state)
    # the demo's rides follow each other within seconds: no repeat window (a bus has 60 s by default)
    deploy_virtual(os.path.join(state, "fs.img"), ks, TERMINAL_ID, fare=FARE, line=LINE, repeat=0)
    vb = VirtualBoard(state, heap=heap)
    try:
        vb.start()
        yield "port", vb.port
        yield "step", "[3/5] taps"
        for (name, _, _, path), spec in zip(cards, CARDS, strict=True):
            for k in range(spec[3]):
                r = vb.tap(path)
                yield (
                    "tap",
                    {"card": name, "n": k + 1, "buzzer": r["buzzer"], "display": r["display"]},
                )
        yield "step", "[4/5] tapkit sync --port %s --db %s" % (vb.port, db_url)
        db = store.open_store(db_url)
        try:
            with SerialLink(vb.port) as link:
                summary = sync_terminal(link, db, ks, progress=progress)
            summary["office_stored"] = office.sync_into(db)["stored"]
        finally:
            db.close()
        yield "sync", {"port": vb.port, "db": db_url, "summary": summary}
    except BoardError as e:
        raise TapkitError(str(e))
    finally:
        vb.stop()

    yield "step", "[5/5] report and balances"
    db = store.open_store(db_url)
    try:
        rep = report.report(db, audit.keys_from(ks))  # figures from verified records only
    finally:
        db.close()
    yield "report", rep
    by_uid = {row["uid"]: row for row in rep["cards"]}
    rows = []
    for name, holder, balance, path in cards:
        with EmulatorReader(path) as r:
            card_balance = cardops.read_balance(DESFireAdmin(r.transceive), ks, r.uid)
            uid = r.uid.hex()
        row = by_uid.get(uid, {})
        charged = row.get("charged", 0)
        pending = row.get("unconfirmed", 0)  # the newest tap, until a later state confirms it
        ledger = row.get("last_balance")
        rows.append(
            {
                "card": name,
                "holder": holder,
                "uid": uid,
                "initial": balance,
                "charged": charged,
                "unconfirmed": pending,
                "refused": row.get("refused", 0),
                "card_balance": card_balance,
                "ledger_balance": ledger,
                "agree": card_balance == ledger == balance - charged - pending,
            }
        )
    yield "cards", rows
    if not all(r["agree"] for r in rows):
        raise TapkitError("card balances do not agree with the ledger (see the table above)")
    yield "done", {"report": rep, "cards": rows}
