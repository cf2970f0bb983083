"""`tapkit demo`: the virtual fleet end to end, on the embedded defaults.

1. issuer keys and three emulated citizen cards with balances (card files);
2. one virtual bus terminal: the firmware on the MicroPython unix port (ESP32-sized heap), its PN532 an
   emulator on a virtual UART, its journal a file-backed NOR flash, its USB serial a pty;
3. taps (several per card; one card runs out of balance and is refused);
4. `tapkit sync --port <pty> --db sqlite:///...` pulls the taps;
5. the report, and the balances read back from the cards checked against the ledger.
"""

import os
import shutil
import time

from host_tools import TapkitError

CARDS = (  # name, holder, initial balance (Rial), taps
    ("alice", "adult", 200000, 3),
    ("bahram", "student", 100000, 2),
    ("cyrus", "senior", 30000, 2),
)
TERMINAL_ID = 1001
FARE = 25000
LINE = 12


def run(workdir="demo-run", json_out=False, heap="112K"):
    from rich.table import Table

    from card_schema import citizen_host
    from card_schema.desfire_admin import DESFireAdmin
    from emulator.vboard import BoardError, VirtualBoard
    from host_tools import cardops, keystore, provision, report, store
    from host_tools.cli import main as cli_main
    from host_tools.readers import EmulatorReader

    from host_tools.cli import _console

    con = _console(stderr=json_out)
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir):
        shutil.rmtree(workdir)
    os.makedirs(workdir)
    ks_path = os.path.join(workdir, "issuer.keys")
    db_url = "sqlite:///" + os.path.join(workdir, "taps.db")

    con.rule("[bold]tapkit demo: one bus, three citizen cards")
    con.print("[1/5] issuer keys and cards")
    ks = keystore.init(ks_path, issuer_id=1)
    cards = []
    now = int(time.time())
    for i, (name, holder, balance, _) in enumerate(CARDS):
        path = os.path.join(workdir, name + ".card")
        cardops.new_emulated_card(
            path,
            ks,
            holder=citizen_host.HOLDER_NAMES.index(holder),
            card_no=100 + i,
            expiry=now + 365 * 86400,
            balance=balance,
            now=now,
        )
        cards.append((name, holder, balance, path))
        con.print(
            "      card %-7s %-8s %9s Rial  (%s)" % (name, holder, format(balance, ","), path)
        )

    con.print(
        "[2/5] virtual bus terminal %d (line %d, fare %s Rial), firmware on MicroPython, heap %s"
        % (TERMINAL_ID, LINE, format(FARE, ","), heap)
    )
    state = os.path.join(workdir, "bus-%d" % TERMINAL_ID)
    fs = os.path.join(state, "fs.img")
    os.makedirs(state)
    provision.deploy_virtual(fs, ks, TERMINAL_ID, fare=FARE, line=LINE)
    vb = VirtualBoard(state, heap=heap)
    try:
        vb.start()
        con.print("      serial port %s" % vb.port)
        con.print("[3/5] taps")
        for (name, _, _, path), spec in zip(cards, CARDS, strict=True):
            for k in range(spec[3]):
                r = vb.tap(path)
                con.print(
                    "      %-7s tap %d: %-7s %s"
                    % (name, k + 1, r["buzzer"], r["display"].replace("DISPLAY|", ""))
                )
        con.print("[4/5] tapkit sync --port %s --db %s" % (vb.port, db_url))
        rc = cli_main(["sync", "--port", vb.port, "--db", db_url, "--keystore", ks_path])
        if rc != 0:
            raise TapkitError("sync failed (exit %d)" % rc)
    except BoardError as e:
        raise TapkitError(str(e))
    finally:
        vb.stop()

    con.print("[5/5] report and balances")
    db = store.open_store(db_url)
    try:
        rep = report.report(db, ks=ks)  # also re-verifies every MAC chain
    finally:
        db.close()
    report.render_table(rep, con)
    by_uid = {row["uid"]: row for row in rep["cards"]}
    t = Table(title="cards: read back from the card vs the ledger")
    for c in (
        "card",
        "holder",
        "initial (Rial)",
        "charged (Rial)",
        "refused",
        "card balance (Rial)",
        "ledger balance (Rial)",
        "agree",
    ):
        t.add_column(c, justify="right" if "(Rial)" in c or c == "refused" else "left")
    ok = True
    rows = []
    for name, holder, balance, path in cards:
        with EmulatorReader(path) as r:
            card_balance = cardops.read_balance(DESFireAdmin(r.transceive), ks, r.uid)
            uid = r.uid.hex()
        row = by_uid.get(uid, {})
        charged = row.get("charged", 0)
        ledger = row.get("last_balance")
        agree = card_balance == ledger == balance - charged
        ok = ok and agree
        rows.append(
            {
                "card": name,
                "uid": uid,
                "initial": balance,
                "charged": charged,
                "refused": row.get("refused", 0),
                "card_balance": card_balance,
                "ledger_balance": ledger,
                "agree": agree,
            }
        )
        t.add_row(
            name,
            holder,
            format(balance, ","),
            format(charged, ","),
            str(row.get("refused", 0)),
            format(card_balance, ","),
            format(ledger, ",") if ledger is not None else "-",
            "yes" if agree else "NO",
        )
    con.print(t)
    if json_out:
        import json

        print(json.dumps({"report": rep, "cards": rows}, indent=1, default=str))
    if not ok:
        raise TapkitError("card balances do not agree with the ledger (see the table above)")
    con.print("[green]demo complete: every tap is in the ledger and every card balance agrees")
    return 0
