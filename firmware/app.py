"""The terminal: boot, the main loop and the tap flow (bus profile, flat fare).

    import firmware.app
    firmware.app.run()          # what main.py does; never returns on a healthy board

The main loop feeds the watchdog, answers sync requests on the USB serial port and polls the reader.
It never dies: any error is recorded in the diagnostics log, shown to the rider and the loop goes on.

Tap (bus, flat fare), as APDUs to the card through the PN532:
  SelectApplication -> ReadData(card info, free) -> AuthenticateAES(debit key, diversified for this
  card) -> ReadRecords(trip log, newest) -> GetValue(purse) -> Debit -> WriteRecord(trip) ->
  [journal the charge, durable] -> CommitTransaction -> "OK" on the display.

The charge is journalled *before* the card commits: if power fails between the two, the journal holds a
charge the card never committed, which the host sees (the card's counter did not advance) and voids;
the other order would lose a tap the rider paid for, which nobody could ever see. If the commit's answer
is lost (card pulled at that instant) the terminal remembers the pending charge; when the same card comes
back it reads the trip log to learn whether the commit happened: if yes, the tap is complete (no second
charge); if not, the pending record is voided and the tap runs again.
"""

import gc
import json
import sys
import time

from card_schema import citizen, desfire, taprecord
from card_schema.crypto import diversify_aes128

import firmware
from firmware import hal, journal, pn532, serialsync

_IDLE = "Tap your card"


class Terminal:
    def __init__(self, board, config, keys):
        self.board = board
        self.config = config
        self.terminal_id = int(config["terminal_id"])
        self.fare = int(config.get("fare", 0))
        self.line = int(config.get("line", 0))
        self.stop = int(config.get("stop", 0))
        self.tariff_ver = int(config.get("tariff_ver", 0))
        self.deny_ver = int(config.get("deny_ver", 0))
        self.errors = []  # type: list  # diagnostics log: the last errors, bounded
        self.debit_master = _unhex(keys["debit"])
        self.journal = journal.Journal(board.flash, _unhex(keys["journal"]), self.terminal_id)
        self.reader = pn532.PN532(board.uart)
        self.card = desfire.DESFire(self.reader.exchange, wrapped=False)
        self.info = {
            "terminal_id": self.terminal_id,
            "fw": firmware.VERSION,
            "config_ver": int(config.get("config_ver", 0)),
            "profile": config.get("profile", "bus"),
            "board": board.name,
        }
        self.responder = serialsync.Responder(
            self.journal, self.info, board.clock, board.console.write, log=lambda: self.errors
        )
        self.present_uid = None  # card still in the field after its tap (not charged again)
        self.pending = None  # (uid, seq, counter) of a charge whose commit answer was lost
        self.taps = 0
        self._trip = bytearray(citizen.TRIP_SIZE)

    # --- diagnostics -------------------------------------------------------------------------
    def log_error(self, where, exc):
        msg = "%d %s: %s %s" % (self.board.clock.time(), where, type(exc).__name__, exc)
        self.errors.append(msg)
        if len(self.errors) > 16:
            self.errors.pop(0)
        self.board.log(msg)

    def show(self, line1, line2="", sound=None):
        self.board.display.show(line1, line2)
        if sound:
            self.board.buzzer.beep(sound)
            self.board.led.set(
                {"ok": "green", "refused": "red", "error": "yellow"}.get(sound, "off")
            )

    # --- main loop -----------------------------------------------------------------------------
    def start(self):
        try:
            self.reader.wakeup()
            self.reader.sam_configure()
        except Exception as e:  # a dead reader chip must not stop sync and diagnostics
            self.log_error("reader init", e)
        self.show(_IDLE, _fmt_rial(self.fare))

    def poll(self):
        """One pass of the main loop. Never raises (except KeyboardInterrupt / SystemExit)."""
        self.board.wdt.feed()
        try:
            line = self.board.console.poll_line()
            if line:
                self.responder.handle_line(line)
        except Exception as e:
            self.log_error("sync", e)
        try:
            uid = self.reader.list_target()
        except Exception as e:
            self.log_error("reader", e)
            time.sleep_ms(50) if hasattr(time, "sleep_ms") else time.sleep(0.05)
            return
        if uid is None:
            if self.present_uid is not None:
                self.present_uid = None
                self.show(_IDLE, _fmt_rial(self.fare))
            return
        uid = bytes(uid)
        if uid == self.present_uid:
            return  # same card still resting on the reader: already handled
        self.present_uid = uid
        self.tap(uid)

    def tap(self, uid):
        # Collect first: the tap then starts from a known heap, and the allocation it makes is
        # measured (gc.mem_alloc grows monotonically until the next collection).
        gc.collect()
        heap0 = gc.mem_alloc()
        t0 = time.ticks_ms()
        apdus0 = self.card.apdus
        try:
            self._tap(uid)
        except pn532.CardGone as e:
            self.present_uid = None
            self.log_error("tap", e)
            self.show("Card removed", "Please tap again", "error")
        except desfire.CardError as e:
            self.present_uid = None
            self.log_error("tap", e)
            self.show("Card error", "Please tap again", "error")
        except journal.JournalFull:
            self.show("Terminal full", "Sync needed - no charge", "error")
        except Exception as e:
            self.log_error("tap", e)
            self.show("Terminal error", "No charge made", "error")
        finally:
            try:
                self.reader.release()
            except Exception:
                pass
        self.taps += 1
        self.board.stat(
            "tap apdus=%d ms=%d alloc=%d heap_used=%d heap_free=%d"
            % (
                self.card.apdus - apdus0,
                time.ticks_diff(time.ticks_ms(), t0),
                gc.mem_alloc() - heap0,
                heap0,
                gc.mem_free(),
            )
        )

    def _tap(self, uid):
        card = self.card
        now = self.board.clock.time()
        try:
            card.select_application(citizen.AID)
        except desfire.CardError as e:
            if e.status == desfire.APPLICATION_NOT_FOUND:
                self.show("Card not accepted", "Not a citizen card", "refused")
                return
            raise
        info = citizen.unpack_card_info(
            card.read_data(citizen.FILE_INFO, 0, citizen.INFO_SIZE, desfire.MODE_PLAIN)
        )
        card.authenticate_aes(
            citizen.KEY_DEBIT, diversify_aes128(self.debit_master, citizen.div_input(uid))
        )
        last = self._last_trip(card)
        counter = last[citizen.TR_COUNTER] if last else 0
        if self.pending is not None and self.pending[0] == uid:
            if self._resolve_pending(uid, last):
                return
        if info[citizen.CI_STATUS] == citizen.STATUS_BLOCKED:
            self._refuse(uid, counter, -1, taprecord.KIND_DENIED, taprecord.RESULT_BLOCKED, now)
            self.show("Card blocked", "See the card office", "refused")
            return
        if info[citizen.CI_EXPIRY] and info[citizen.CI_EXPIRY] < now:
            self._refuse(uid, counter, -1, taprecord.KIND_DENIED, taprecord.RESULT_EXPIRED, now)
            self.show("Card expired", "See the card office", "refused")
            return
        balance = card.get_value(citizen.FILE_PURSE, desfire.MODE_ENC)
        fare = self.fare
        if balance < fare:
            self._refuse(
                uid, counter, balance, taprecord.KIND_REFUSED, taprecord.RESULT_INSUFFICIENT, now
            )
            self.show("Insufficient balance", "Balance " + _fmt_rial(balance), "refused")
            return
        if self.journal.full:
            raise journal.JournalFull("journal full")
        new_balance = balance - fare
        counter += 1
        card.debit(citizen.FILE_PURSE, fare, desfire.MODE_ENC)
        citizen.pack_trip_into(
            self._trip,
            counter,
            now,
            self.terminal_id,
            fare,
            new_balance,
            self.line,
            self.stop,
            citizen.TRIP_DEBIT,
            taprecord.PROFILE_BUS,
            0,
            0,
        )
        card.write_record(citizen.FILE_TRIPS, 0, self._trip, desfire.MODE_MAC)
        # Durable first: the charge is in the journal before the card commits (see module doc).
        seq = self.journal.append_tap(
            time=now,
            uid=uid,
            kind=taprecord.KIND_CHARGE,
            result=taprecord.RESULT_OK,
            profile=taprecord.PROFILE_BUS,
            counter=counter,
            amount=fare,
            balance=new_balance,
            line=self.line,
            stop=self.stop,
            tariff_ver=self.tariff_ver,
            deny_ver=self.deny_ver,
        )
        try:
            card.commit_transaction()
        except pn532.CardGone:
            self.pending = (uid, seq, counter, now)
            raise
        self.pending = None
        self.show("OK  -" + _fmt_rial(fare), "Balance " + _fmt_rial(new_balance), "ok")

    def _last_trip(self, card):
        try:
            raw = card.read_records(citizen.FILE_TRIPS, 0, 1, citizen.TRIP_SIZE, desfire.MODE_MAC)
        except desfire.CardError as e:
            if e.status == desfire.BOUNDARY_ERROR:  # no record yet: a new card
                return None
            raise
        return citizen.unpack_trip(raw)

    def _resolve_pending(self, uid, last):
        """The same card is back after a lost commit answer. True when that charge did commit."""
        p = self.pending
        self.pending = None
        if p is None:
            return False
        seq = p[1]
        counter = p[2]
        t = p[3]
        if (
            last
            and last[citizen.TR_COUNTER] == counter
            and last[citizen.TR_TERMINAL] == self.terminal_id
            and last[citizen.TR_TIME] == t
        ):
            self.show(
                "OK  -" + _fmt_rial(last[citizen.TR_AMOUNT]),
                "Balance " + _fmt_rial(last[citizen.TR_BALANCE]),
                "ok",
            )
            return True
        # The card never committed: void the journalled charge, then charge afresh.
        self.journal.append_tap(
            time=self.board.clock.time(),
            uid=uid,
            kind=taprecord.KIND_VOID,
            result=taprecord.RESULT_REMOVED,
            profile=taprecord.PROFILE_BUS,
            counter=counter,
            amount=seq,
            line=self.line,
            stop=self.stop,
            tariff_ver=self.tariff_ver,
            deny_ver=self.deny_ver,
        )
        return False

    def _refuse(self, uid, counter, balance, kind, result, now):
        if self.journal.full:
            return  # refusals are not money: never block on them
        self.journal.append_tap(
            time=now,
            uid=uid,
            kind=kind,
            result=result,
            profile=taprecord.PROFILE_BUS,
            counter=counter,
            amount=self.fare,
            balance=balance,
            line=self.line,
            stop=self.stop,
            tariff_ver=self.tariff_ver,
            deny_ver=self.deny_ver,
        )


def _unhex(s):
    import binascii

    return binascii.unhexlify(s)


def _fmt_rial(v):
    """12345678 -> '12,345,678 Rial' (amounts are integers in Rial)."""
    neg = v < 0
    s = str(-v if neg else v)
    out = ""
    while len(s) > 3:
        out = "," + s[-3:] + out
        s = s[:-3]
    return ("-" if neg else "") + s + out + " Rial"


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def run(board_path="board.json", config_path="config.json", keys_path="keys.json", max_loops=0):
    """Boot and run the main loop. `max_loops` > 0 stops after that many passes (tests)."""
    board = hal.load(board_path)
    try:
        config = _load_json(config_path)
        keys = _load_json(keys_path)
    except (OSError, ValueError) as e:
        # Not provisioned: stay up (sync and REPL still work) and say so.
        board.display.show("Not provisioned", "Run tapkit flash")
        board.log("boot: config missing or damaged: %s" % e)
        while True:
            board.wdt.feed()
            time.sleep(1)
    try:
        term = Terminal(board, config, keys)
    except Exception as e:
        # A broken part (journal flash, keys) must not boot-loop the board: stay up, diagnosable over
        # the REPL, and refuse taps (a tap that cannot be journalled must not be charged).
        board.display.show("Out of service", "Terminal fault")
        board.log("boot: terminal failed to start: %s: %s" % (type(e).__name__, e))
        while True:
            board.wdt.feed()
            time.sleep(1)
    term.start()
    board.log(
        "boot: terminal %d ready, journal head %d, %d unsynced"
        % (term.terminal_id, term.journal.head_seq, term.journal.unsynced)
    )
    n = 0
    while True:
        try:
            term.poll()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # last line of defence: the loop goes on
            term.log_error("loop", e)
        n += 1
        if max_loops and n >= max_loops:
            return term
        time.sleep_ms(20) if hasattr(time, "sleep_ms") else time.sleep(0.02)


if __name__ == "__main__":
    run(*sys.argv[1:])
