"""The money campaign: the ledger equals what the riders' cards paid, whatever the power, the card or
the radio do (issue "Every rial"; tests/e2e/test_money.py runs a few hundred cases, `make bench` and
`python -m bench money` at least 10,000).

The real firmware (the deployed .mpy on the MicroPython VM, 112 KB heap) runs a terminal of one
profile on a virtual board; a pool of emulated cards (issued as the card office issues them) rides
it. Each case is one rider's tap (an intent), with one seeded fault of the power, the card or the
radio, and what the rider does next:

    faults   cut-before K, cut-after K   SIGKILL of the firmware when the card gets frame K of the tap
                                         (before it runs it / after it ran, the answer never read)
             cut-ok                      SIGKILL the moment the terminal shows its OK (the CONFIRM
                                         record may or may not be written)
             timer T                     SIGKILL T ms after the card is placed, wherever the firmware is
             boot T                      a cut, then another cut T ms into the boot (journal recovery
                                         and the card memory's replay)
             lost K, damaged K, late K   the card's answer to frame K never arrives / arrives with one
                                         bit flipped / arrives after the reader stopped waiting
                                         (the chip ACKs and sends nothing more: emulator.pn532
                                         NO_ANSWER; no wall-clock race with the driver's timeout)
             drop K                      the field drops at frame K (the card leaves; a torn command
                                         is all or nothing, emulator.card)
             unlisted K                  the reader chip loses its target after frame K: the next
                                         frame is never sent (PN532 status 27)
             none                        nothing goes wrong
    then     kept                        the card stays on the reader (across the reboot after a cut)
             pulled                      the rider pulls it at the fault, and taps again
             other                       another rider taps first, then this one taps again
             gone                        this rider does not come back (until the closing taps)

After every case, for the rider: no more than one card transaction for the intent; every message
the terminal beeped with is true against the card (OK and its balance: the card paid and holds that
balance; "No charge made", a refusal: the card did not pay for this intent; "Please tap again": that
attempt changed nothing). After the closing taps (every card once more, clean) the terminal is synced
into a back-office store and, for every card: the confirmed ledger equals what the card paid (its
own trip log, kept by the harness since issue), no confirmed charge the card never committed
(phantom), every charge confirmed or voided (unresolved 0). A charge is confirmed by a CONFIRM or
voided by a VOID of the terminal naming its seq, else resolved by the card's later records (counter
continuity: the back office's rule, computed here from the store's records).

Replayable: everything comes from the seed (cards, keys, faults); a failure names seed and case:

    python -m bench money --cases 200 --seed 7 --profile bus
"""

import os
import random
import tempfile
import threading
import time

from card_schema import citizen, citizen_host, taprecord_host
from harness.boards import SigFrames

TERMINAL = 7
FARE = 25000
CARDS = 120  # the pool of riders: a card rides again after the others, outside the repeat window
SYNC_EVERY = 150  # cases between syncs (the virtual board's journal holds about 3,800 records)
CHECK = "Checking"
# what a charge's OK starts with on the display (firmware/app.py; the car park's own texts,
# firmware/profile_parking.py ok()): the rider was told, even when the power went before the beep
OK_SHOWN = ("DISPLAY| OK", "DISPLAY| Parked", "DISPLAY| Parking started")
FRAMES = 9  # frames of a charged tap: select, auth x2, card info, trips, value, debit, record, commit  # (not counted: the 5 of the issuer signature read on a card's first tap, harness.boards)
FAULTS = (  # (kind, weight)
    ("cut-before", 14),
    ("cut-after", 14),
    ("cut-ok", 4),
    ("timer", 6),
    ("boot", 2),
    ("lost", 10),
    ("damaged", 8),
    ("late", 2),
    ("drop", 6),
    ("unlisted", 2),
    ("none", 4),
)
FOLLOWS = ("kept", "pulled", "other", "gone")
PROFILES = ("bus", "taxi", "pos", "charity", "parking")
PARKING_TABLE = {"zones": {"1": {"grace": 0, "hourly": 4000, "cap": 40000}}, "repeat": 60}


class MoneyFailure(AssertionError):
    pass


def _kinds():
    out = []
    for k, w in FAULTS:
        out += [k] * w
    return out


class Rider:
    """A card in front of the antenna, with the fault of this attempt at its frame K."""

    def __init__(self, card, run):
        self.card = card
        self.run = run
        self.plan = None
        self.pull = False
        self.frames = 0
        self.fired = None
        self.relay = None  # relay(frame, answer) -> answer: a man in the middle (tests)
        self.sig = SigFrames()

    def __getattr__(self, name):  # uid, atqa, sak, ats, select(), field_off(): the card's
        return getattr(self.card, name)

    def arm(self, plan, pull):
        self.plan = plan
        self.pull = pull
        self.frames = 0
        self.fired = None

    def transceive(self, frame):
        if self.relay is not None:
            return self.relay(bytes(frame), self.card.transceive(frame))
        if self.sig(frame):  # a first tap's signature read: not a frame of the plan's count
            return self.card.transceive(frame)
        k = self.frames
        self.frames += 1
        p = self.plan
        if p is None or p[1] != k or p[0] in ("timer", "boot", "cut-ok", "none"):
            return self.card.transceive(frame)
        kind = self.fired = p[0]
        run = self.run
        card = self.card
        if kind == "cut-before":
            run.kill()
            card.field_off()
            return None
        if kind == "cut-after":
            card.transceive(frame)
            run.kill()
            card.field_off()
            return None
        if kind == "unlisted":  # the reader chip loses its target after this frame (a chip reset)
            run.unlist = True
            return card.transceive(frame)
        if kind == "drop":
            from emulator.card import FieldLost

            card.tear = lambda c, f: p[2]
            try:
                card.transceive(frame)
            except FieldLost:
                pass
            finally:
                card.tear = None
            run.vb.field.remove()
            return None
        r = card.transceive(frame)
        if kind == "lost":
            r = None
        elif kind == "damaged" and r:
            r = bytearray(r)
            i = p[3] % len(r)
            r[i] ^= 1 << p[4]
            r = bytes(r)
        elif kind == "late":  # the card ran it; its answer comes after the reader stopped waiting
            from emulator.pn532 import NO_ANSWER

            r = NO_ANSWER
        if self.pull:
            run.vb.field.remove()
        return r


class _Intent:
    def __init__(self, card, terminal, amount=0, refund=False):
        self.card = card
        self.terminal = terminal
        self.changes = 0  # card transactions of this terminal while this intent ran
        self.amount = amount  # keypad profiles: what is typed for it (the same on every retry)
        self.refund = refund


def _state(card):
    """(balance, newest counter, newest trip record tuple or None) of an emulated card."""
    recs = card.records(citizen.AID, citizen.FILE_TRIPS)
    last = citizen.unpack_trip(bytes(recs[0])) if recs else None
    return card.value(citizen.AID, citizen.FILE_PURSE), (last[0] if last else 0), last


class Run:
    """One campaign on one virtual board (see the module doc)."""

    def __init__(self, seed, profile, state_dir, heap="112K"):
        self.seed = seed
        self.profile = profile
        self.state_dir = state_dir
        self.heap = heap
        self.rng = random.Random(seed)
        self.kinds = _kinds()
        self.killed = False
        self.clock_offset = 0
        self.tally = {
            "cases": 0,
            "cuts": 0,
            "faults": {},
            "attempts": 0,
            "phantom_charges": 0,
            "double_charges": 0,
            "unresolved": 0,
            "ledger_minus_cards": 0,
            "missed_charges": 0,
            "untrue_messages": 0,
            "charges": 0,
            "confirmed": 0,
            "voided": 0,
            "by_continuity": 0,
            "checking_shown": 0,
            "retaps": 0,
            "syncs": 0,
            # the report before confirmations: every charge not voided is revenue
            "naive_phantoms": 0,
            "naive_ledger_minus_cards": 0,
        }
        self.history = {}  # uid hex -> {counter: trip tuple}: every transaction the card committed
        self.failures = []
        self.keep_going = False  # count every broken invariant instead of stopping at 20 (bench)

    # ---- the fleet of one ----------------------------------------------------------------------
    def start(self):
        from harness.boards import deploy
        from host_tools.backoffice import store

        rng = self.rng
        from harness.boards import shared_sign_key
        from host_tools import keystore

        keys = {r: bytes(rng.getrandbits(8) for _ in range(16)) for r in keystore.ROLES}
        self.ks = {"issuer_id": 1, "keys": keys, "path": None, "sign": shared_sign_key()}
        self.cards = [self._issue(i) for i in range(CARDS)]
        self.last_use = {}  # card index -> terminal time of its last intent
        cfg = {"profile": self.profile, "line": 1, "zone": 1}
        if self.profile == "bus":
            cfg["fare"] = FARE
        elif self.profile == "charity":
            cfg["amounts"] = [5000, 20000]
            cfg["fare"] = 0
        elif self.profile == "parking":
            cfg["fares"] = PARKING_TABLE
        else:
            cfg["fare"] = 0
        from emulator.vboard import VirtualBoard

        deploy(self.state_dir, self.ks, TERMINAL, **cfg)
        self.vb = VirtualBoard(self.state_dir, heap=self.heap)
        self.vb.start()
        # "unlisted": the chip has no target for the next InDataExchange (it answers status 27)
        chip = self.vb.chip
        exchange = chip.commands[0x40]
        self.unlist = False

        def unlisted_exchange(p):
            if self.unlist:
                self.unlist = False
                chip._target = None
            return exchange(p)

        chip.commands[0x40] = unlisted_exchange
        self.db = store.open_store("sqlite:///" + os.path.join(self.state_dir, "office.db"))
        return self

    def stop(self):
        try:
            self.vb.stop()
        finally:
            self.db.close()

    def _issue(self, i, holder=None, expiry=2**31 - 1, balance=10**9):
        from card_schema.desfire_admin import DESFireAdmin
        from emulator.card import DESFireCard
        from host_tools.cardoffice import cardops

        rng = self.rng
        card = DESFireCard.blank(uid=b"\x04" + bytes(rng.getrandbits(8) for _ in range(6)))
        card.random = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
        df = DESFireAdmin(card.transceive, random=card.random)
        if holder is None:
            holder = citizen_host.HOLDER_NAMES[i % 3]  # adult, student, senior (staff: free)
        cardops.issue(df, self.ks, card.uid, holder, 100 + i, expiry, balance=balance, now=1)
        card.field_off()
        self._learn(card)
        return Rider(card, self)

    def _learn(self, card):
        h = self.history.setdefault(bytes(card.uid).hex(), {})
        for r in card.records(citizen.AID, citizen.FILE_TRIPS):
            t = citizen.unpack_trip(bytes(r))
            h[t[0]] = t

    # ---- power ---------------------------------------------------------------------------------
    def kill(self):
        """Power off now (SIGKILL, as an ignition cut): from any thread, even inside a frame."""
        p = self.vb.proc
        self.killed = True
        if p is not None and p.poll() is None:
            p.replaced = True  # the board host must not take it for a crash (REPL)
            p.kill()

    def jump(self, seconds):
        """Move the terminal's clock on (SET_CLOCK over its serial port, as a sync does): the next
        rides are a new day, outside every repeat window."""
        from host_tools.fleet.link import SerialLink

        self.clock_offset += seconds
        from host_tools import keystore

        with SerialLink(self.vb.port) as link:
            link.key = keystore.terminal_key(self.ks, TERMINAL)  # SET_CLOCK is a tagged control
            link.identify()
            link.set_clock(self.now())

    def now(self):
        return int(time.time()) + self.clock_offset

    def restart(self):
        """Power back after a cut (the clock runs on: the board's RTC, or the host's here)."""
        self.tally["cuts"] += 1
        self.kill()
        self.killed = False
        self.vb.restart("power cut", wait_ready=60)

    # ---- one attempt: the card on the reader until the terminal has answered -------------------
    def _wait(self, mark, prefix, timeout, stop=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in self.vb.lines(mark):
                if ln.startswith(prefix):
                    return ln
            if self.killed or stop is not None and stop.is_set():
                return None
            time.sleep(0.003)
        tail = "\n  ".join(self.vb.lines()[-12:])
        raise MoneyFailure(
            "the terminal did not answer (%s) in %.0f s; last lines:\n  %s"
            % (prefix, timeout, tail)
        )

    def attempt(self, rider, plan=None, hold=False, pull=False, timer=None):
        """Place the card (with `plan`'s fault) until the beep; returns (display, sound) or None when
        the power went first. The card stays when `hold`."""
        rider.arm(plan, pull)
        vb = self.vb
        mark = vb.mark()
        t = None
        done = threading.Event()
        if timer is not None:
            t = threading.Timer(timer / 1000.0, self.kill)
            t.start()
        elif plan and plan[0] == "cut-ok":

            def watch():
                if self._wait(mark, OK_SHOWN, 30, done):
                    self.kill()

            t = threading.Thread(target=watch, daemon=True)
            t.start()
        vb.place(rider)
        try:
            beep = self._wait(mark, "BUZZER|", 20)
            if beep is not None:
                self._wait(mark, "STAT|", 20)
        finally:
            done.set()
            if t is not None:
                if hasattr(t, "cancel"):
                    t.cancel()
                t.join(5)
        lines = vb.lines(mark)
        self.shown = [ln for ln in lines if ln.startswith("DISPLAY|")]  # everything, in order
        if CHECK in " ".join(lines):
            self.tally["checking_shown"] += 1
        if not hold:
            vb.field.remove()
            if not self.killed:
                vb.remove(wait_seen=5.0)
                # A card left in the field after "Please tap again" is tapped again by the terminal
                # before the rider lifts it: the rider then sees that tap's answer (its beep is in
                # the lines now: the firmware has polled the empty field since).
                lines = vb.lines(mark)
                beeps = [ln for ln in lines if ln.startswith("BUZZER|")]
                if len(beeps) > 1:
                    self.tally["retaps"] += 1
                    beep = beeps[-1]
        if beep is None or self.killed:
            return None
        shown = [ln for ln in lines if ln.startswith("DISPLAY|")]
        i = len(lines) - 1 - lines[::-1].index(beep)
        before = [ln for ln in lines[:i] if ln.startswith("DISPLAY|")]
        return ((before or shown or [""])[-1], beep.split("|", 1)[1].strip())

    # ---- the truth of what the rider was told --------------------------------------------------
    def _judge(self, where, intent, shown, changed):
        """`shown` (display, sound) after an attempt that made `changed` card transactions."""
        if shown is None:
            return
        text, sound = shown
        card = intent.card
        balance, _, last = _state(card)
        wrong = None
        if sound == "ok":
            if "Already paid" in text:
                if not (last and last[2] == TERMINAL):
                    wrong = (
                        "Already paid, but the card's newest transaction is not this terminal's"
                    )
                elif intent.changes < 1:  # every intent is outside the repeat windows (case())
                    wrong = "Already paid, but the card did not pay for this tap"
            elif intent.changes < 1:
                wrong = "OK, but the card did not pay for this tap"
            elif "Balance" in text and "{:,}".format(balance) not in text:
                wrong = "OK with another balance than the card's %d" % balance
        elif sound == "refused":
            if changed:
                wrong = "a refusal, but the attempt changed the card"
        elif "Not confirmed" in text:
            pass  # the truth: the terminal does not know yet
        elif "No charge" in text or "no charge" in text:
            if intent.changes:
                wrong = "'no charge', but the card paid for this tap"
        elif changed:
            wrong = "'%s' after an attempt that changed the card" % text
        if wrong:
            self.tally["untrue_messages"] += 1
            self._fail("%s: %s (shown %r)" % (where, wrong, text))

    def _fail(self, msg):
        self.failures.append(msg)
        if len(self.failures) > 20 and not self.keep_going:
            raise MoneyFailure("\n".join(self.failures))

    def _changes(self, card, counter0):
        """Card transactions of this terminal since counter0 (and learn them)."""
        self._learn(card)
        h = self.history[bytes(card.uid).hex()]
        return sum(
            1
            for c, t in h.items()
            if c > counter0 and t[2] == TERMINAL and not t[10] & citizen_host.FLAG_BLOCKED
        )

    def new_card(self, holder="adult", expiry=2**31 - 1, balance=10**9):
        """One more issued card, outside the pool (tests)."""
        return self._issue(len(self.history), holder, expiry, balance)

    def sync(self):
        """`tapkit sync` of the terminal into the back office, on the campaign's clock: a sync sets
        the terminal's clock when it drifts, and with the host's own it would undo every jump (the
        terminal then a jump behind: riders the campaign takes as new inside its repeat and
        same-tap windows, "Already paid" and an earlier pending charge's OK for a new intent)."""
        from host_tools.fleet.link import SerialLink
        from host_tools.fleet.sync import sync_terminal

        with SerialLink(self.vb.port) as link:
            sync_terminal(link, self.db, self.ks, now=lambda: time.time() + self.clock_offset)

    def records(self):
        """The terminal's records in the back office (synced now), as taprecord_host dicts."""
        self.sync()
        return [taprecord_host.to_dict(r) for r in self.db.raw_records(TERMINAL)]

    def _try(self, where, intent, plan=None, hold=False, pull=False, timer=None):
        card = intent.card
        self._keys(intent)
        c0 = _state(card)[1]
        shown = self.attempt(card, plan, hold, pull, timer)
        self.tally["attempts"] += 1
        changed = self._changes(card, c0)
        intent.changes += changed
        self._judge(where, intent, shown, changed)
        return shown

    def _keys(self, intent):
        """What the cashier or driver does before the tap (keypad profiles): the intent's sale,
        typed again on each retry."""
        p = self.profile
        if not intent.amount:
            intent.amount = 1 + self.rng.randrange(9)
            intent.refund = p == "pos" and self.rng.random() < 0.2
        if p == "taxi":
            self.vb.press("%d#" % intent.amount)
        elif p == "pos":
            # a refund of the card's last sale (refused when there is none), or a sale
            self.vb.press("R#" if intent.refund else "%d#" % intent.amount)
        elif p == "charity":
            self.vb.press(str(1 + intent.amount % 2))

    # ---- one case ------------------------------------------------------------------------------
    def case(self, step):
        try:
            self._case(step)
        except MoneyFailure as e:
            raise MoneyFailure("seed %d case %d: %s" % (self.seed, step, e))

    def riders(self):
        """(rider, other rider) of the next case: card indexes, each outside every repeat and
        same-tap window (the clock jumps when none is)."""
        # the rider: the card that rode longest ago (a new intent, outside the repeat window)
        a = min(range(CARDS), key=lambda i: (self.last_use.get(i, -(10**9)), i))
        if self.now() - self.last_use.get(a, -(10**9)) < 130:
            self.jump(200)

        # the other rider: one that rode longest ago too (every rider's tap is a new intent: a
        # card back within the firmware's same-tap time is told OK for its earlier tap, truly)
        def free():
            now = self.now()
            return [
                i for i in range(CARDS) if i != a and now - self.last_use.get(i, -(10**9)) >= 130
            ]

        others = free()
        if not others:  # every other card rode within the window (a + 1, which had, was taken)
            self.jump(200)
            others = free()
        return a, others[self.rng.randrange(len(others))]

    def _case(self, step):
        rng = self.rng
        where = "seed %d case %d" % (self.seed, step)
        a, b = self.riders()
        kind = rng.choice(self.kinds)
        follow = rng.choice(FOLLOWS)
        k = rng.randrange(FRAMES)
        plan = (
            kind,
            k,
            rng.choice(("before", "after", rng.random())),
            rng.randrange(64),
            rng.randrange(8),
        )
        timer = None
        if kind in ("timer", "boot"):  # boot: the first cut is a timer's, the second in the boot
            timer = rng.randrange(40)
        where += " (%s at frame %d, %s)" % (kind, k, follow)
        f = self.tally["faults"]
        f[kind] = f.get(kind, 0) + 1
        rider = _Intent(self.cards[a], TERMINAL)
        other = _Intent(self.cards[b], TERMINAL)
        self.last_use[a] = self.now()
        shown = self._try(where, rider, plan, hold=follow == "kept", pull=follow == "pulled",
                          timer=timer)  # fmt: skip
        told_ok = (shown is not None and shown[1] == "ok") or any(
            ln.startswith(OK_SHOWN)
            for ln in self.shown  # an OK shown, even if cut after it
        )
        if self.killed:
            rider.card.arm(None, False)
            if follow != "kept":
                self.vb.field.remove()
            mark = self.vb.mark()
            c0 = _state(rider.card.card)[1]
            if kind == "boot":  # power back, and lost again while the terminal boots
                self.tally["cuts"] += 1
                self.killed = False
                self.vb.restart("power cut", wait_ready=0)
                time.sleep(rng.randrange(300) / 1000.0)
            self.restart()
            if follow == "kept":  # the card was on the reader all along: the boot taps it
                shown = None
                if self._wait(mark, "BUZZER|", 20):
                    self._wait(mark, "STAT|", 20)
                    lines = self.vb.lines(mark)
                    bl = [ln for ln in lines if ln.startswith("BUZZER|")][-1]
                    disp = [ln for ln in lines[: lines.index(bl)] if ln.startswith("DISPLAY|")]
                    shown = (disp[-1] if disp else "", bl.split("|", 1)[1].strip())
                changed = self._changes(rider.card.card, c0)
                rider.changes += changed
                self._judge(where + " boot tap", rider, shown, changed)
        if follow == "kept":
            self.vb.field.remove()
            self.vb.remove(wait_seen=5.0)
        elif follow == "other":
            self.last_use[b] = self.now()
            self._try(where + " other rider", other)
            if self._retries(rider, told_ok):
                self._try(where + " again", rider)
        elif follow == "pulled" and self._retries(rider, told_ok):
            self._try(where + " again", rider)
        if rider.changes > 1:
            self.tally["double_charges"] += 1
            self._fail("%s: the card paid %d times for one tap" % (where, rider.changes))
        if other.changes > 1:
            self.tally["double_charges"] += 1
            self._fail("%s: the other rider paid %d times" % (where, other.changes))
        self.tally["cases"] += 1

    def _retries(self, intent, told_ok):
        """Whether the rider taps again for this intent: always, but on the POS a sale and in the
        car park an entry or exit the terminal showed OK for (even if the power went right after)
        is done: there a second tap is a second transaction (a second sale, no repeat window,
        firmware/profile_pos.py; the exit after the entry, firmware/profile_parking.py)."""
        return not (self.profile in ("pos", "parking") and told_ok and intent.changes)

    def _seen_beep(self, mark):
        return any(ln.startswith("BUZZER|") for ln in self.vb.lines(mark))

    # ---- closing taps and the ledger -----------------------------------------------------------
    def closing(self):
        """Every card once more, clean (pending charges resolve), then the ledger check."""
        self.jump(200)  # a new day: outside every repeat window
        for i in sorted(self.last_use):  # every card that rode
            self._try("seed %d closing tap %d" % (self.seed, i), _Intent(self.cards[i], TERMINAL))
        self.sync_and_check("seed %d closing" % self.seed, final=True)

    def sync_and_check(self, where, final=False):
        try:
            self.sync()
        except Exception as e:  # noqa: BLE001  any failure of the sync is the campaign's failure
            raise MoneyFailure("%s: the sync failed: %s: %s" % (where, type(e).__name__, e))
        self.tally["syncs"] += 1
        recs = [taprecord_host.to_dict(r) for r in self.db.raw_records(TERMINAL)]
        led = ledger(recs)
        t = self.tally
        for k in ("charges", "confirmed", "voided", "by_continuity"):
            t[k] = led[k]
        t["unresolved"] = len(led["unresolved"])
        t["phantom_charges"] = 0
        t["missed_charges"] = 0
        diff = 0
        for uid, hist in self.history.items():
            mine = {c: tr for c, tr in hist.items() if tr[2] == TERMINAL}
            paid = sum(_signed(tr) for tr in mine.values())
            got = led["cards"].get(uid, {})
            diff += got.get("revenue", 0) - paid
            for c in got.get("counters", ()):
                if c not in mine:
                    t["phantom_charges"] += 1
                    self._fail("%s: card %s: a confirmed charge at counter %d it never paid" % (
                        where, uid, c))  # fmt: skip
            for c, tr in mine.items():
                if (
                    tr[7] in (citizen.TRIP_DEBIT, citizen_host.TRIP_REFUND)
                    and not tr[10] & citizen_host.FLAG_BLOCKED
                    and c not in got.get("counters", ())
                    and (final or (uid, c) not in led["pending"])
                ):
                    t["missed_charges"] += 1
                    self._fail("%s: card %s paid at counter %d, the ledger does not count it" % (
                        where, uid, c))  # fmt: skip
        if not final:  # between syncs: unresolved charges are listed, resolved later
            diff += sum(a for (u, c), a in led["pending"].items() if c in self.history.get(u, {}))
        t["ledger_minus_cards"] = diff
        naive = 0
        claims = {}  # (uid, counter) -> charges not voided that claim it
        voided = {r["amount"] for r in recs if r["kind"] == "void"}
        for r in recs:
            if (
                r["kind"] in ("charge", "refund")
                and r["result"] == "ok"
                and r["seq"] not in voided
            ):
                naive += r["amount"] if r["kind"] == "charge" else -r["amount"]
                key = (r["uid"], r["counter"])
                claims[key] = claims.get(key, 0) + 1
        t["naive_phantoms"] = sum(
            n - (1 if self.history.get(u, {}).get(c, (0, 0, 0))[2] == TERMINAL else 0)
            for (u, c), n in claims.items()
        )
        t["naive_ledger_minus_cards"] = naive - sum(
            _signed(tr) for h in self.history.values() for tr in h.values() if tr[2] == TERMINAL
        )
        if diff:
            self._fail("%s: ledger minus what the cards paid: %d Rial" % (where, diff))
        if final:
            for u in led["unresolved"]:
                self._fail("%s: unresolved charge %s" % (where, u))


def _signed(trip):
    """What a card's trip record moved to this terminal: + a debit, - a refund."""
    if trip[10] & citizen_host.FLAG_BLOCKED:
        return 0
    if trip[7] == citizen.TRIP_DEBIT:
        return trip[3]
    if trip[7] == citizen_host.TRIP_REFUND:
        return -trip[3]
    return 0


def ledger(recs):
    """The back office's ledger (host_tools.backoffice.ledger.resolve, per card) of one terminal's
    records (dicts of taprecord_host.to_dict): a charge or refund is confirmed by a CONFIRM naming
    its seq or by the card's later state, voided by a VOID naming it, phantom when another
    transaction of its counter is the one the card went on from, else unconfirmed. Returns
    {charges, confirmed, voided, by_continuity, unresolved: [...], pending: {(uid, counter):
    amount}, cards: {uid: {revenue, counters}}}."""
    from host_tools.backoffice.ledger import resolve

    named = {r["amount"] for r in recs if r["kind"] in ("confirm", "void")}
    by_card = {}
    for r in recs:
        if r["uid"] != "00" * 7:
            d = dict(r, status=None)
            by_card.setdefault(r["uid"], []).append(d)
    out = {"charges": 0, "confirmed": 0, "voided": 0, "by_continuity": 0}
    cards, unresolved, pending = {}, [], {}
    for uid, rows in by_card.items():
        status, _found = resolve(rows)
        for r in rows:
            if r["kind"] not in ("charge", "refund"):
                continue
            st = status.get((r["terminal"], r["seq"]))
            out["charges"] += 1
            signed = r["amount"] if r["kind"] == "charge" else -r["amount"]
            if st != "unconfirmed" and r["seq"] not in named:
                out["by_continuity"] += 1
            if st == "confirmed":
                out["confirmed"] += 1
                d = cards.setdefault(uid, {"revenue": 0, "counters": []})
                d["revenue"] += signed
                d["counters"].append(r["counter"])
            elif st in ("voided", "phantom"):
                out["voided"] += 1
            else:
                unresolved.append("seq %d card %s counter %d" % (r["seq"], uid, r["counter"]))
                pending[(uid, r["counter"])] = signed
    out.update(unresolved=unresolved, pending=pending, cards=cards)
    return out


def money_campaign(seed=1, cases=200, profile="bus", heap="112K", keep_going=False):
    """Run `cases` seeded cases on one virtual terminal of `profile`; returns the tally (module
    doc). Raises MoneyFailure naming seed and case when an invariant breaks; with keep_going the
    tally counts them all and "failures" holds the first 20 lines."""
    with tempfile.TemporaryDirectory() as d:
        run = Run(seed, profile, os.path.join(d, "term"), heap)
        run.keep_going = keep_going
        run.start()
        try:
            for step in range(cases):
                run.case(step)
                if (step + 1) % SYNC_EVERY == 0:
                    run.sync_and_check("seed %d case %d (sync)" % (seed, step))
            run.closing()
        finally:
            run.stop()
        if run.failures and not keep_going:
            raise MoneyFailure("\n".join(run.failures))
        run.tally["failures"] = run.failures[:20]
        run.tally["failed"] = len(run.failures)
        return run.tally
