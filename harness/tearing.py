"""Tearing campaign on the firmware's own tap: the field drops in the middle of a fare debit, the
rider taps again (tests/emulator/test_tearing.py runs a few hundred drops, `make bench` thousands).

The tap is the terminal's: firmware/app.py as deployed (.mpy on the MicroPython unix port, 112 KB
heap) on a virtual bus board (emulator/vboard.py), through its PN532 driver and the emulated PN532, to
an emulated DESFire card held in memory here. The transaction, as the card sees it:
SelectApplication -> ReadData(card info) -> AuthenticateAES(debit key, 2 frames) -> ReadRecords
(newest trip) -> GetValue -> Debit -> WriteRecord(trip) -> [the terminal journals the charge] ->
CommitTransaction. Each drop picks one of the first TAP_FRAMES frames and how the field goes: before
the frame, after it (the answer is lost) or at a seeded point inside the command (see
emulator.card.DESFireCard.transceive); the card then leaves the reader (the rider pulled it). After
every drop:

- the torn tap showed no OK, and the committed card is either exactly as before or exactly one whole
  tap further (balance down by the fare AND one new trip record with the next counter and that
  balance): "balance and trip log change together or not at all";
- the rider taps again, untorn: the terminal shows OK and the balance, and the two taps together
  charged exactly once (the terminal resolves a lost commit answer from the card's trip log instead
  of charging twice, and charges afresh when the commit never happened);
- the card is consistent (balance == newest trip's balance after, counters contiguous);
- every SYNC_EVERY drops and at the end, the terminal's journal is synced into a back-office store
  (`tapkit sync`'s code over the board's serial port, MAC chain checked): the store's charges for
  the card that are not voided are exactly the card's counters, once each, at the fare, ending at the
  card's balance (a charge journalled before a commit that never happened was voided).

    python -m bench tearing --drops 3000 --seed 7

A failure names the seed and the drop (step) so it replays: the drops come from the seed alone, and so
do the card's keys, UID and random numbers; the card starts each campaign freshly issued.
"""

import os
import random
import tempfile

from card_schema import citizen
from harness.boards import SigFrames

FARE = 25000
TERMINAL = 1
TAP_FRAMES = 9  # frames of a tap: select, read, auth x2, records, value, debit, record, commit
MODES = ("before", "after", "inside")
SYNC_EVERY = 500  # drops between syncs: the board's journal (256 KB) holds about 3,800 records


class TearingFailure(AssertionError):
    pass


class _RiderCard:
    """The card in the rider's hand: when the field drops (the card model raises FieldLost) it has
    left the reader, so the terminal's next poll finds the field empty until it is tapped again."""

    def __init__(self, card, field):
        self.card = card
        self.field = field

    def __getattr__(self, name):  # uid, atqa, sak, ats, select(), field_off(): the card's
        return getattr(self.card, name)

    def transceive(self, frame):
        from emulator.card import FieldLost

        try:
            return self.card.transceive(frame)
        except FieldLost:
            self.field.remove()
            raise


def _issued_card(rng, balance):
    """A freshly issued card and the issuer keystore, both from `rng` (replayable)."""
    from card_schema.desfire_admin import DESFireAdmin
    from emulator.card import DESFireCard
    from harness.boards import shared_sign_key
    from host_tools import keystore
    from host_tools.cardoffice import cardops

    keys = {r: bytes(rng.getrandbits(8) for _ in range(16)) for r in keystore.ROLES}
    ks = {"issuer_id": 1, "keys": keys, "path": None, "sign": shared_sign_key()}
    card = DESFireCard.blank(uid=b"\x04" + bytes(rng.getrandbits(8) for _ in range(6)))
    card.random = lambda n: bytes(rng.getrandbits(8) for _ in range(n))
    df = DESFireAdmin(card.transceive, random=card.random)
    cardops.issue(df, ks, card.uid, "adult", 1, 2**31 - 1, balance=balance, now=1)
    return card, ks


def _committed(card):
    recs = card.records(citizen.AID, citizen.FILE_TRIPS)
    return card.value(citizen.AID, citizen.FILE_PURSE), [bytes(r) for r in recs]


def _one_tap_further(before, after, fare):
    """True when `after` is `before` plus exactly one whole charged tap."""
    b0, r0 = before
    b1, r1 = after
    if b1 != b0 - fare or len(r1) < 1 or r1[1 : 1 + len(r0)] != r0[: len(r1) - 1]:
        return False
    t = citizen.unpack_trip(r1[0])
    c0 = citizen.unpack_trip(r0[0])[citizen.TR_COUNTER] if r0 else 0
    return t[citizen.TR_BALANCE] == b1 and t[citizen.TR_COUNTER] == c0 + 1


def _check_consistent(card, where):
    balance, recs = _committed(card)
    if recs:
        t = citizen.unpack_trip(recs[0])
        if t[citizen.TR_BALANCE] != balance:
            raise TearingFailure(
                "%s: purse %d but newest trip says balance %d"
                % (where, balance, t[citizen.TR_BALANCE])
            )


def tearing_campaign(seed=1, drops=300, fare=FARE, heap="112K", plan=None):
    """Run `drops` seeded field drops across the firmware's tap, each followed by the rider's tap
    again; returns the tally {drops, committed, not_committed, taps, before, after, inside, synced,
    voided}. `plan`: a list of (frame, mode, fraction) drops to run instead of the seeded ones.

    Raises TearingFailure("seed S step N ...: ...") when an invariant breaks."""
    from harness.boards import deployed_board

    rng = random.Random(seed)
    drops = len(plan) if plan is not None else drops
    card, ks = _issued_card(rng, fare * (drops * 2 + 10))
    issued = citizen.unpack_trip(_committed(card)[1][0])[citizen.TR_COUNTER]  # the top-up's
    tally = {"drops": 0, "committed": 0, "not_committed": 0, "taps": 0, "synced": 0, "voided": 0}
    tally.update({m: 0 for m in MODES})
    with tempfile.TemporaryDirectory() as d:
        from host_tools.backoffice import store

        state = os.path.join(d, "bus")
        db = store.open_store("sqlite:///" + os.path.join(d, "office.db"))
        try:
            # repeat=0: one card taps again and again within seconds here (the repeat window
            # and the card resting on the reader across a power cut: harness/money.py)
            cfg = {"fare": fare, "line": 1, "repeat": 0}
            with deployed_board(state, ks, TERMINAL, heap=heap, **cfg) as vb:
                rider = _RiderCard(card, vb.field)
                for step in range(drops):
                    if plan is None:
                        drop = (rng.randrange(TAP_FRAMES), rng.choice(MODES), rng.random())
                    else:
                        drop = plan[step]
                    _drop(vb, card, rider, drop, "seed %d step %d" % (seed, step), fare, tally)
                    if (step + 1) % SYNC_EVERY == 0 or step + 1 == drops:
                        where = "seed %d step %d (sync)" % (seed, step)
                        tally["synced"] += _sync_and_check(vb, db, ks, card, fare, issued, where)
            tally["voided"] = sum(t["kind"] == "void" for t in db.taps(TERMINAL))
        finally:
            db.close()
    return tally


def _sync_and_check(vb, db, ks, card, fare, issued, where):
    """Sync the terminal into the store and check the card's charges there (the card was issued
    at counter `issued`); returns the records pulled."""
    from host_tools.fleet.link import SerialLink
    from host_tools.fleet.sync import sync_terminal

    try:
        with SerialLink(vb.port) as link:
            summary = sync_terminal(link, db, ks)
    except Exception as e:  # noqa: BLE001  any failure of the sync is the campaign's failure
        raise TearingFailure("%s: the sync failed: %s: %s" % (where, type(e).__name__, e))
    balance, recs = _committed(card)
    newest = citizen.unpack_trip(recs[0])[citizen.TR_COUNTER]
    uid = bytes(card.uid).hex()
    from host_tools.backoffice import audit

    audit.run(db, audit.keys_from(ks))  # the store's figures are the audited records'
    charges = db.card_charges(uid)
    counters = [c[1] for c in charges]
    want = list(range(issued + 1, newest + 1))
    if counters != want:
        twice = sorted({c for c in counters if counters.count(c) > 1})
        missing = sorted(set(want) - set(counters))
        raise TearingFailure(
            "%s: the back office's charges for the card (not voided) are not its counters %d..%d:"
            " twice %s, missing %s, unknown %s"
            % (
                where,
                issued + 1,
                newest,
                twice[:5],
                missing[:5],
                sorted(set(counters) - set(want))[:5],
            )
        )
    if any(c[5] != fare for c in charges) or (charges and charges[-1][6] != balance):
        raise TearingFailure(
            "%s: the back office's charges do not add up to the card's balance %d"
            % (where, balance)
        )
    return summary["pulled"]


def _drop(vb, card, rider, drop, where, fare, tally):
    """One torn tap (drop: frame index, mode, fraction inside) and the rider's tap again."""
    from emulator.vboard import BoardError

    frame_no, mode, frac = drop
    what = "%s (frame %d, %s%s)" % (
        where,
        frame_no,
        mode,
        " at %.2f" % frac if mode == "inside" else "",
    )
    seen = []
    sig = SigFrames()

    def tear(c, f):
        if sig(f):  # a first tap's issuer signature read: not one of the tap's frames here
            return None
        seen.append(f)
        if len(seen) - 1 == frame_no:
            return frac if mode == "inside" else mode
        return None

    before = _committed(card)
    tears = card.tears
    card.tear = tear
    try:
        torn = vb.tap(rider)
    except BoardError as e:
        raise TearingFailure("%s: the torn tap did not end: %s" % (what, e))
    finally:
        card.tear = None
    if card.tears == tears:
        raise TearingFailure(
            "%s: frame %d was never sent (%d frames)" % (what, frame_no, len(seen))
        )
    if "OK" in torn["display"]:
        raise TearingFailure("%s: the torn tap showed %r" % (what, torn["display"]))
    tally["drops"] += 1
    tally[mode] += 1
    after = _committed(card)
    if after == before:
        tally["not_committed"] += 1
    elif _one_tap_further(before, after, fare):
        tally["committed"] += 1
    else:
        raise TearingFailure(
            "%s: balance and trip log did not change together: balance %d -> %d, "
            "%d -> %d records" % (what, before[0], after[0], len(before[1]), len(after[1]))
        )
    _check_consistent(card, what)
    # the rider taps again, untorn: OK, and the two taps together charged exactly once
    try:
        again = vb.tap(rider)
    except BoardError as e:
        raise TearingFailure("%s: the next tap did not end: %s" % (what, e))
    tally["taps"] += 1
    final = _committed(card)
    if not _one_tap_further(before, final, fare):
        raise TearingFailure(
            "%s: the torn tap and the next one did not charge exactly once: balance %d -> %d, "
            "%d -> %d records (next tap showed %r)"
            % (what, before[0], final[0], len(before[1]), len(final[1]), again["display"])
        )
    shown = "{:,}".format(final[0])
    if "OK" not in again["display"] or shown not in again["display"]:
        raise TearingFailure(
            "%s: the next tap showed %r, not OK with balance %s" % (what, again["display"], shown)
        )
    _check_consistent(card, what + " next tap")
