"""The rare paths of a pending charge (a CommitTransaction whose answer was missing, late or damaged).
Imported by firmware.app only while one of them runs, and forgotten after (a module in RAM costs heap
on every tap; these run seldom).

    pending.check(term, uid)        # right after the lost answer: "Checking - keep the card ..."
    pending.run(term, uid, i, trips, n, now)         # the card is back: its trip log decides

How the card decides: the pending charge would have given the card counter c with a trip record of
this terminal at the charge's time. The card's trip log (MACed read in the debit-key session) holds
its newest records: the record at counter c is ours -> the commit happened (CONFIRM, result
trip-log); the card is below c, or its record at c is another terminal's -> it never did (VOID,
result trip-log). A card below c - 1 went back (a restored image): left pending, refused by the
rollback check. A charge older than the card's trip log (9 records) is left to the back office, which
resolves it from the card's later transactions (counter continuity).
"""

import gc
import time

from micropython import const

from card_schema import citizen, desfire, taprecord
from firmware import journal, msg

_t = msg.text
_KIND_CONFIRM = const(7)  # = card_schema.taprecord_host.KIND_CONFIRM
_RESULT_TRIP_LOG = const(9)  # = card_schema.taprecord_host.RESULT_TRIP_LOG
_SAME_TAP_S = const(120)  # = card_schema.tariff_host.SAME_TAP_S
_TRIPS_ON_CARD = const(9)  # records the cyclic trip log keeps (citizen_host.TRIP_RECORDS - 1)
_TR_KIND = const(7)  # = card_schema.citizen_host.TR_KIND
_PENDING = const(1)  # firmware.journal.Cards' flag
# What the rider is told while a pending charge is checked: only this rare path shows it, so its
# texts live here, in both languages (firmware/msg_en.py and msg_fa.py hold the others: in RAM on
# every tap)
_EN = ("Checking -", "keep the card on the reader", "Not confirmed yet", "Tap the card to check")
_FA = (
    "در حال بررسی -",
    "کارت را روی دستگاه نگه دارید",
    "هنوز تایید نشده",
    "برای بررسی کارت را بزنید",
)
_CHECK_MS = const(1000)
_WINDOW = const(
    240
)  # journal records replayed into the card memory at boot  # how long the card is looked for after a lost commit answer


def run(term, uid, i, trips, n, now, same=False):
    """The card of a pending charge is back (entry i of term.mem; `n` its newest trip's counter;
    `trips` its newest records as read by the tap). Journals CONFIRM or VOID. True when the tap is
    complete: the charge committed and this is the same tap (`same`, or the card's newest record
    and within SAME_TAP_S), shown OK and not charged again."""
    mem = term.mem
    e = mem.get(i)
    c = e[2]  # the card's counter if the pending charge committed
    if n < c - 1:
        return False  # the card went back: the rollback check refuses it, the charge stays
    rec = None
    if n >= c:
        off = n - c
        if trips and off * citizen.TRIP_SIZE < len(trips):
            rec = citizen.unpack_trip(trips, off * citizen.TRIP_SIZE)
        elif off < _TRIPS_ON_CARD:
            rec = citizen.unpack_trip(
                term.card.read_records(
                    citizen.FILE_TRIPS, off, 1, citizen.TRIP_SIZE, desfire.MODE_MAC
                )
            )
        else:  # beyond the card's trip log: the back office resolves it (counter continuity)
            mem.set(i, uid, 0, n, -1, e[4], 0, 0)
            term.log_error("pending", ValueError("seq %d left to the back office" % e[5]))
            return False
        if not (
            rec[citizen.TR_COUNTER] == c
            and rec[citizen.TR_TERMINAL] == term.terminal_id
            and rec[citizen.TR_TIME] == e[6]
        ):
            rec = None  # counter c is another terminal's transaction: ours never committed
    if rec is None:
        term._journal(uid, now, taprecord.KIND_VOID, _RESULT_TRIP_LOG, c, e[5], -1)
        return False
    term._journal(uid, now, _KIND_CONFIRM, _RESULT_TRIP_LOG, c, e[5], e[3])
    if not same and (n != c or not 0 <= now - e[6] < _SAME_TAP_S):
        return False  # confirmed; the card is here for a new tap
    a = rec[citizen.TR_AMOUNT]
    term.show(
        _t(msg.OK) + ("  +" if rec[_TR_KIND] != citizen.TRIP_DEBIT else "  -") + msg.money(a),
        _t(msg.BALANCE) + " " + msg.money(rec[citizen.TR_BALANCE]),
        "ok",
    )
    # the sale, share or refund is complete: the keypad profile clears it
    term.pending = ()  # committed: nothing after this may say "no charge"
    if term.on_done:
        term.on_done(term, a)
    return True


def check(term, uid):
    """Right after a lost, late or damaged commit answer: tell the rider, then look at the card again
    (it should still be on the reader) and learn from its trip log whether the commit happened.
    Shows OK (committed), "No charge made" (it never did), or "Not confirmed yet - tap the card to
    check" when the card is gone (the charge stays pending until it comes back)."""
    say = _FA if term.config.get("lang") == "fa" else _EN
    term.show(say[0], say[1])
    reader = term.reader
    card = term.card
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < _CHECK_MS:
        term.board.wdt.feed()
        gc.collect()
        try:
            reader.release()
            if reader.list_target() == uid:
                card.select_application(citizen.AID)
                term._auth(uid)
                trips = term._trips(card, uid)
                n = citizen.unpack_trip(trips)[citizen.TR_COUNTER] if trips else 0
                i = term.mem.find(uid)
                if i < 0:
                    break  # not remembered (cannot happen within one tap): the host decides
                if run(term, uid, i, trips, n, term.board.clock.time(), True):
                    term.present_uid = uid
                    return
                if not term.mem.get(i)[1] & _PENDING:  # voided: it never committed
                    term.present_uid = uid
                    term.show(_t(msg.NO_CHARGE), _t(msg.TAP_AGAIN), "error")
                    return
                break  # neither: the card went back (a rollback); the host decides
        except journal.JournalError as e:
            term.log_error("check", e)
            break
        except Exception as e:
            term.log_error("check", e)
        time.sleep_ms(50)
    term.present_uid = None
    term.show(say[2], say[3], "error")
