"""The terminal: boot, the main loop and the tap flow (the fare comes from the configured profile).

    import firmware.app
    firmware.app.run()          # what main.py does; never returns on a healthy board

The main loop feeds the watchdog, answers sync requests on the USB serial port and polls the reader.
It never dies: any error is recorded in the diagnostics log, shown to the rider and the loop goes on.

Tap, as APDUs to the card through the PN532:
  SelectApplication -> ReadData(card info, free) -> AuthenticateAES(debit key, diversified for this
  card) -> ReadRecords(trip log, newest) -> GetValue(purse) -> Debit -> WriteRecord(trip) ->
  [journal the charge, durable] -> CommitTransaction -> "OK" on the display.

Profiles: config.json "profile" names a module firmware/profile_<name>.py, imported at boot (only that
one is in RAM). It prices the ride from the signed fare table and the card's newest trip records.
The contract: the terminal looks the hooks up once, when it starts (Terminal.on_key, on_idle, on_ok,
on_done: None for a hook the profile leaves out), calls setup() then and own() only when price() says
OWN, and reads the constants where they are used (`duration` at each journal record):

  required
    PROFILE                 its code (card_schema.profile), written into trip and tap records
    HISTORY                 trip records a tap may read when the newest is not a ride (a top-up
                            between two rides): `trips` holds up to that many, newest first
    price(table, line, holder, now, trips, terminal_id)
                            -> (amount in Rial >= 0, trip flags), or (code, 0) with a price code of
                            card_schema.profile: REPEAT, NO_FARE, WAIT, OWN (below)
  optional
    WAIT_MSG = msg.ENTER    what a tap shows while price() says WAIT
    duration = 0            minutes the journal record carries (a module global the profile
                            updates, read when journalling: parking)
    setup(term)             once, when the terminal starts
    key(term, k)            each key of the board's keypad (board.json ui.keypad), from the main loop
    idle(term)              draws the idle screen (default: the line's fare)
    ok(fare, flags) -> str  the first line after a charge (default: "OK  -<fare>")
    done(term, amount)      after a committed charge (also one a lost commit answer left pending
                            that the card's trip log shows committed)
    own(term, uid, last, counter, now)
                            the whole tap, when price() says OWN (after the card checks)

What a profile may use of the terminal (`term`): the attributes config, table (the verified fare
table or None), terminal_id, line, zone, card (the authenticated card session: card_schema.desfire),
journal (full, unsynced...), and the methods show(line1, line2, sound), write_trip(...) and
commit(...): a profile that changes the card stages its writes, then commit() journals and commits
them in one step, durable first (see `commit`). Nothing else of Terminal is the profile's.

Tables (card_schema/tariff.py, loaded by firmware/tables.py): fares.bin, deny.bin, deny_delta.bin,
signed blobs installed by firmware/install.py. Verified with keys.json "config" at boot and whenever
the installed versions change; a table that fails verification is never used: without a valid fare
table paid taps are refused ("Out of service"); without a provisioned fares.bin the config's flat
"fare" is the table. Their versions go into every tap record (tariff_ver, deny_ver).

Deny list: a listed card is refused ("Card not allowed"); an entry with the block action also marks
the card: the debit key cannot write card info (only the issuer key can set its status), so the
terminal writes a trip record with FLAG_BLOCKED (amount 0, true balance, counter + 1) and every
terminal refuses a card whose newest trip record carries it. The card office's next write (top-up or
`card block`) replaces that mark: unblocking is the card office's decision.

Price codes: REPEAT (same card on this terminal within the table's `repeat` seconds) shows "Already
paid" and the balance, and neither charges nor journals anything; the terminal also takes as REPEAT
any price equal to the card's newest debit on this terminal within that window (default 60 s,
card_schema.tariff_host.DEFAULT_REPEAT): the sale retyped after a power cut is not paid twice; NO_FARE shows "Out of service";
WAIT (a keypad profile with nothing entered) refuses the tap, nothing journalled; OWN hands the tap,
after the card checks, to the profile's own() (the POS refund: LimitedCredit + a refund trip record +
a KIND_REFUND journal record, one transaction).

The charge is journalled *before* the card commits: if power fails between the two, the journal holds a
charge the card never committed, which the host sees (the card's counter did not advance) and voids;
the other order would lose a tap the rider paid for, which nobody could ever see. If the commit's answer
is lost (card pulled at that instant) the terminal remembers the pending charge; when the same card comes
back it reads the trip log to learn whether the commit happened: if yes, the tap is complete (no second
charge); if not, the pending record is voided and the tap runs again.
"""

import gc
import struct
import sys
import time

from micropython import const

from card_schema import citizen, denylist, desfire, taprecord
from card_schema import crypto
from card_schema.crypto import diversify_aes128

import firmware
from firmware import hal, journal, msg, pn532

_TYPING = const(0)
if _TYPING:  # mypy only: folded away by the compiler (no code, no name on the board)
    from typing import Any

    from firmware.journal import Cards, Journal

_t = msg.text
_money = msg.money
# Codes owned by card_schema, copied as private consts (no heap: tests/firmware/test_const_owners.py)
_REPEAT = const(-1)  # = card_schema.profile.REPEAT
_WAIT = const(-3)  # = card_schema.profile.WAIT
_OWN = const(-4)  # = card_schema.profile.OWN
_RESULT_DENYLIST = const(2)  # = card_schema.taprecord_host.RESULT_DENYLIST
_FLAG_BLOCKED = const(0x80)  # = card_schema.citizen_host.FLAG_BLOCKED
_TR_KIND = const(7)  # = card_schema.citizen_host.TR_KIND
_TR_FLAGS = const(10)  # = card_schema.citizen_host.TR_FLAGS
_CI_HOLDER = const(1)  # = card_schema.citizen_host.CI_HOLDER
_QUIET = [0, 0]  # firmware update: [taps seen, since when] (Terminal._update)
_OTA_QUIET_MS = const(3000)  # no tap that long: a safe moment to switch (firmware/ota.py)
_SHOWS = const(4)  # displays remembered for `tapkit diag --watch` (firmware/diag.py)
_KIND_CONFIRM = const(7)  # = card_schema.taprecord_host.KIND_CONFIRM
_RESULT_COMMIT_ANSWER = const(8)  # = card_schema.taprecord_host.RESULT_COMMIT_ANSWER
_RESULT_NOT_SENT = const(10)  # = card_schema.taprecord_host.RESULT_NOT_SENT
_RESULT_ROLLBACK = const(11)  # = card_schema.taprecord_host.RESULT_ROLLBACK
_DEFAULT_REPEAT = const(60)  # = card_schema.tariff_host.DEFAULT_REPEAT
_PENDING = const(1)  # firmware.journal.Cards' flag: a charge of the card is pending
_NO_TARGET = const(0x27)  # PN532 status: no activated target (the chip transmitted nothing)
# CardGone code of commit(): the CommitTransaction frame went out and no valid answer came back,
# the charge is pending (an exception class of its own would cost a qstr on every board)
_PEND = const(-3)
_DIAG = const(0x10)  # = card_schema.frames.DIAG
_SIGNED_HEADER = const(13)  # = card_schema.signed.HEADER
_IDLE_GARBAGE = const(4096)  # bytes the main loop may allocate between two collections
_UPLOAD_RETRY_MS = const(2000)  # = firmware.wifi._MIN_BACKOFF
# heap a console line may need beside a Wi-Fi exchange (the answer; and the sync responder's code
# when it is not loaded): with less free, the line stops the exchange (Terminal.poll). Measured on
# the virtual board (64-bit VM: more than an ESP32) mid-exchange: ~16.0 KB free without the
# responder, ~9.0 KB after it loaded and answered IDENTIFY (it takes ~7 KB); a line at ~14 KB
# left ~7 KB in pieces and IDENTIFY failed (426 bytes). 12 KB asked 18 KB, which the heap never
# has: every exchange a host talked over was stopped (retried 2 s later), uploads never ended
_LINE_ROOM = const(6144)
_RESPONDER_ROOM = const(9216)
_TAP_GARBAGE = const(1024)  # bytes a tap may allocate between two collections (Terminal._exchange)
# refused by the issuer's signature: RESULT_NOT_ISSUED is _RESULT_SIG - 1, msg 35 _BAD_VALUE - 1
_RESULT_SIG = const(13)  # = card_schema.taprecord_host.RESULT_OVER_CEILING
_BAD_VALUE = const(36)  # = firmware.msg._BAD_VALUE (and _BAD_VALUE - 1: _NOT_ISSUED)
_SIG_CARDS = const(16)  # cards whose issuer signature this terminal checked (RAM, 12 bytes each)
_UNSIGNED = const(0x7FFFFFFF)  # the ceiling of a card without a signature file, when allowed
_FILE_SIG = const(0x05)  # = card_schema.issuersig_host.FILE_SIG
_SIG_SIZE = const(264)  # = card_schema.issuersig_host.SIZE
_FILE_NOT_FOUND = const(0xF0)  # = card_schema.desfire_admin.FILE_NOT_FOUND


class Terminal:
    """One terminal: its board, config, journal, reader and the loaded profile (`prof`). What a profile
    may use of it is listed in the module doc (the profile contract)."""

    # Its state, set up by firmware/start.py (boot-only code, forgotten after: a method here would
    # keep its bytecode in the heap for good). Annotations only: they cost the board nothing.
    board: "Any"  # hal.Board
    config: dict
    terminal_id: int
    fare: int  # the flat fare (config "fare"), without a fare table
    line: int
    stop: int
    zone: int
    profile: str
    prof: "Any"  # firmware/profile_<profile>.py
    on_key: "Any"  # the profile's hooks, None when it has none (module doc)
    on_idle: "Any"
    on_ok: "Any"
    on_done: "Any"
    tariff_ver: int
    deny_ver: int
    errors: list  # diagnostics log: the last errors, bounded
    nerr: int  # errors logged since boot (the log keeps only the last ones)
    # the last displays, for `tapkit diag --watch`: a ring of [n, time, line1, line2, sound] (n
    # counts every show since boot), preallocated and updated in place: a show allocates nothing
    shows: list
    shown: int
    debit_master: bytes
    config_key: "bytes | None"  # verifies the signed tables (install.py, tables.py)
    # the issuer's public key (key id || RSA modulus: card_schema.issuersig; None: no card is
    # checked), and the cards whose signature this terminal checked (_ceiling): uid(7), 0,
    # ceiling i32 each, a ring; then the ring's next entry and 1 when require_issuer_sig
    issuer: "bytes | None"
    _sigs: bytearray
    table: "dict | None"  # the verified fare table
    deny: list  # [(open file, count)], newest kind last (the delta is looked up first)
    _vers: tuple  # the tables' versions loaded (firmware/tables.py)
    _dbuf: bytearray
    journal: "Journal"
    _hw_fill: int  # the fill (percent) last reported above the high-water mark
    mem: "Cards"  # the cards seen recently and their pending charges
    reader: "pn532.PN532"
    card: "desfire.DESFire"
    _gmark: int  # the tap's heap: in use at the last collection
    _peak: int  # and at most
    info: dict  # IDENTIFY's (serialsync.py)
    responder: "Any"  # the sync responder while a host talks (sync_responder), else None
    sync_requests: int  # requests answered by responders already forgotten (diag)
    _heard: "Any"  # ticks of the last console line
    _held: "Any"  # a console line that stopped the Wi-Fi exchange: answered on the next pass
    _sync_idle: int
    # the USB controls' state (firmware/serialsync.py "auth", firmware/maint.py): here, not in the
    # responder that is loaded and forgotten
    auth: list
    # the Wi-Fi uploader's state between exchanges (firmware/wifi.py, loaded only while one is
    # under way): [next try (ticks), back-off, wire key, install.part, address, firmware release
    # offered (-1: report the status first), the last exchange was POST /v1/ota]; None without a net
    up: "list | None"
    _wifi: bool  # an exchange is under way (the module is loaded)
    last_sync: int  # when a host last acknowledged taps (diag)
    booted: "Any"  # ticks
    present_uid: "bytes | None"  # card still in the field after its tap (not charged again)
    # the card committed in this tap (no message may then say "no charge"): (uid, seq, counter,
    # balance) of the confirmation pending until the rider saw the OK
    pending: "tuple | None"
    taps: int
    _trip: bytearray

    def __init__(self, board, config, keys):
        firmware.load("start").setup(self, board, config, keys)
        firmware.forget("start")

    # --- diagnostics -------------------------------------------------------------------------
    def log_error(self, where, exc):
        msg = "%d %s: %s %s" % (self.board.clock.time(), where, type(exc).__name__, exc)
        self.errors.append(msg)
        self.nerr += 1
        if len(self.errors) > 16:
            self.errors.pop(0)
        self.board.log(msg)

    # --- signed tables -------------------------------------------------------------------------
    def load_tables(self):
        """(Re)load fares.bin, deny.bin, deny_delta.bin; verify each; use only what verifies
        (firmware/tables.py: loaded for it and forgotten after, with tariff and signed)."""
        tables = firmware.load("tables")
        try:
            tables.load(self)
        finally:
            firmware.forget("tables")
            _forget_schema("tariff", "signed")

    def _deny_action(self, uid):
        for i in range(len(self.deny) - 1, -1, -1):
            f, n = self.deny[i]
            a = denylist.deny_lookup(f, _SIGNED_HEADER + 4, n, uid, self._dbuf)
            if a >= 0:
                return -1 if a == denylist.ACTION_REMOVE else a
        return -1

    def _idle(self):
        if self.on_idle:
            return self.on_idle(self)
        t = self.table
        fare = t.get("fares", {}).get(str(self.line), t.get("default")) if t else None
        j = self.journal
        if j.high_water:  # the driver's cue to sync before taps are refused; logged once per %
            f = j.fill
            self.show(_t(msg.IDLE), "Sync soon: journal %d%% full" % f)
            if f != self._hw_fill:
                self._hw_fill = f
                self.log_error("journal", journal.JournalError("%d%% full, sync soon" % f))
            return
        self.show(_t(msg.IDLE), "" if fare is None else _money(fare))

    def show(self, line1, line2="", sound=None):
        """Two lines on the display; `sound` "ok", "refused" or "error" also beeps and lights the LED."""
        self.board.display.show(line1, line2)
        n = self.shown = self.shown + 1
        s = self.shows[n % _SHOWS]
        s[0] = n  # one store each: a 5-tuple unpacking would allocate
        s[1] = self.board.clock.time()
        s[2] = line1
        s[3] = line2
        s[4] = sound
        if sound:
            self.board.buzzer.beep(sound)
            self.board.led.set(
                {"ok": "green", "refused": "red", "error": "yellow"}.get(sound, "off")
            )

    # --- main loop -----------------------------------------------------------------------------
    def sync_responder(self):
        """The sync protocol's responder (firmware/serialsync.py), loaded on first use."""
        r = self.responder
        if r is None:
            serialsync = firmware.load("serialsync")

            r = self.responder = serialsync.Responder(
                self.journal, self.info, self.board.clock, self.board.console.write,
                log=lambda: self.errors, auth=self.auth,
            )  # fmt: skip
            r.extra = lambda t, b: _diag(self, t, b)  # `tapkit diag` (firmware/diag.py)
            r.config_key = self.config_key  # INSTALL of signed tables (install.py)
        return r

    def _forget_responder(self):
        self.sync_requests += self.responder.requests  # type: ignore[union-attr]
        self.responder = None
        firmware.forget("serialsync")
        self._trim()

    def _trim(self):
        """Forget what rare jobs left of card_schema: tariff and signed (install, tables) and, while
        no host talks, frames (sync, maint, install): a tap finds the heap of a fresh boot."""
        _forget_schema("tariff", "signed")
        if self.responder is None:
            _forget_schema("frames")

    def _update(self):
        """Reset for a firmware update at a safe moment: no card in the field, no pending charge,
        no tap for 3 s, no host on the USB serial (no line for sync_idle_ms: a tap forgets the
        responder of a host still talking), no Wi-Fi exchange (firmware/ota.py)."""
        q = _QUIET
        now = time.ticks_ms()
        if (
            q[0] != self.taps
            or self.present_uid is not None
            or self.pending is not None
            or self.responder is not None
            or (self.sync_requests and time.ticks_diff(now, self._heard) < self._sync_idle)
            or self._wifi
        ):
            q[0], q[1] = self.taps, now  # type: ignore[call-overload]
        elif time.ticks_diff(now, q[1]) > _OTA_QUIET_MS:
            firmware.load("ota").switch(self)

    def start(self):
        try:
            self.reader.wakeup()
            self.reader.sam_configure()
        except Exception as e:  # a dead reader chip must not stop sync and diagnostics
            self.log_error("reader init", e)
        self._idle()

    def poll(self):
        """One pass of the main loop. Never raises (except KeyboardInterrupt / SystemExit)."""
        self.board.wdt.feed()
        try:
            line = self._held
            if line is None:
                line = self.board.console.poll_line()
            else:
                self._held = None
                gc.collect()
            if line:
                self._heard = time.ticks_ms()
                if self._wifi:
                    # a Wi-Fi exchange under way goes on beside the host's answer while the heap
                    # has room for both (stopped, it starts again 2 s later: a host talking every
                    # second held uploads off for good); else the host's answer first
                    gc.collect()
                    if gc.mem_free() < _LINE_ROOM + (0 if self.responder else _RESPONDER_ROOM):
                        # answered on the next pass: in this one the GC still finds the uploader
                        # from the stack (measured: 13.7 KB free right after the stop, 22.3 KB on
                        # the next pass; the responder loaded now left 7 KB in pieces and the
                        # IDENTIFY answer failed for 426 bytes)
                        self._stop_upload()
                        self._held = line
                        return
                acked = self.journal.acked_seq
                self.sync_responder().handle_line(line)
                if self.journal.acked_seq != acked:
                    self.last_sync = self.board.clock.time()
            elif (
                self.responder and time.ticks_diff(time.ticks_ms(), self._heard) > self._sync_idle
            ):
                self._forget_responder()
        except Exception as e:
            self.log_error("sync", e)
        m = self.auth[5]
        if m is not None:  # maintenance mode: firmware/maint.py, loaded only while it lasts
            from firmware import maint

            maint.maintain(self, m)
            if self.auth[5] is None:
                firmware.forget("maint")
        if self.board.net is not None and "server" in self.config:
            if self._wifi or time.ticks_diff(time.ticks_ms(), self.up[0]) >= 0:  # type: ignore[index]
                self._upload()
        if self.on_key:
            try:
                k = self.board.keypad.poll()
                if k:
                    self.on_key(self, k)
            except Exception as e:
                self.log_error("keypad", e)
        i = self.info
        if self._vers != (i["fares_ver"], i["deny_ver"], i["deny_delta_ver"]):
            self.load_tables()  # a table was installed: verify and use it from the next tap
            self._idle()
        o = i.get("ota")
        if o and o[0] == 2:  # a verified release waits in ota.bin (firmware/ota.py): a reset at a
            self._update()  # safe moment, and the boot stages it
        try:
            uid = self.reader.list_target()
        except Exception as e:
            self.log_error("reader", e)
            time.sleep_ms(50) if hasattr(time, "sleep_ms") else time.sleep(0.05)
            return
        if uid is None:
            if self.present_uid is not None:
                self.present_uid = None
                self._idle()
            return
        uid = bytes(uid)
        if uid == self.present_uid:
            return  # same card still resting on the reader: already handled
        self.present_uid = uid
        if self._wifi:
            self._stop_upload()  # the tap first: it gets the heap a USB-only terminal has
        if self.responder is not None:  # idle between a host's lines (its state is the
            self._forget_responder()  # Terminal's): the tap's heap; the next line loads it again
        self.tap(uid)

    def _upload(self):
        """One step of the Wi-Fi upload (firmware/wifi.py): its code is in the heap only while an
        exchange is under way, and forgotten after it (its state between exchanges: `up`)."""
        p = self.up[3]  # type: ignore[index]
        if not self._wifi and p and p[2] and p[3] == p[2]:
            # a download complete in install.part: installed with the uploader's heap (firmware/
            # install.py wifi), in a pass after the one that ended the exchange (in that one the
            # GC still found the uploader from the stack: MemoryError, 512 bytes, under load)
            try:
                firmware.load("install").wifi(self)
            except Exception as e:  # MemoryError loading it: tried again a while later
                self.up[0] = time.ticks_add(time.ticks_ms(), _UPLOAD_RETRY_MS)  # type: ignore[index]
                self.log_error("wifi", e)
            firmware.forget("install", "store")
            self._trim()
            return
        try:
            if self._wifi:
                from firmware import wifi
            else:
                if self.responder is not None:  # idle between a host's lines: the heap is the
                    self._forget_responder()  # exchange's (the next line loads it again); the
                    return  # exchange starts on the next pass (in this one the GC still finds it)
                wifi = firmware.load("wifi")
            self._wifi = wifi.poll(self)
        except Exception as e:  # MemoryError loading it: tried again a while later
            self._wifi = False
            self.up[0] = time.ticks_add(time.ticks_ms(), _UPLOAD_RETRY_MS)  # type: ignore[index]
            self.log_error("wifi", e)
        if not self._wifi:
            firmware.forget("wifi")
            p = self.up[3]  # type: ignore[index]
            if p and p[2] and p[3] == p[2]:  # a download complete: installed on the next pass
                self.up[0] = time.ticks_ms()  # type: ignore[index]
            self._trim()  # install.part() or a downloaded table loaded them

    def _stop_upload(self):
        from firmware import wifi

        wifi.stop(self)
        self._wifi = False
        firmware.forget("wifi")
        self._trim()

    def tap(self, uid):
        # Collect first: the tap then starts from a known heap, and the allocation it makes is
        # measured (gc.mem_alloc grows monotonically until the next collection).
        gc.collect()
        heap0 = self._gmark = self._peak = gc.mem_alloc()
        t0 = time.ticks_ms()
        now_ = self.board.clock.time()
        apdus0 = self.card.apdus
        self.pending = None
        try:
            self._tap(uid)
        except pn532.CardGone as e:
            if e.args[1:] == (_PEND,):  # the commit's answer was lost: look at the card again
                from firmware import pending  # the rare path, forgotten after (RAM)

                try:
                    pending.check(self, uid)
                finally:
                    firmware.forget("pending")
            else:
                self.present_uid = None
                self.log_error("tap", e)
                self.show(_t(msg.REMOVED), _t(msg.TAP_AGAIN), "error")
        except desfire.CardError as e:
            self.present_uid = None
            self.log_error("tap", e)
            self.show(_t(msg.CARD_ERROR), _t(msg.TAP_AGAIN), "error")
        except journal.JournalFull:
            # refused before any debit (see _tap): nothing charged, nothing lost; said in diag too
            self.log_error("tap", journal.JournalFull("%d unsynced taps" % self.journal.unsynced))
            self.show(_t(msg.FULL), _t(msg.SYNC_NEEDED), "error")
        except Exception as e:
            self.log_error("tap", e)
            if self.pending is None:  # after the card committed, the OK shown stays true
                self.show(_t(msg.TERM_ERROR), _t(msg.NO_CHARGE), "error")
        finally:
            try:
                self.reader.release()
            except Exception:
                pass
        c = self.pending
        if c:  # the rider has the OK: now journal that the card's answer confirmed it
            self.pending = None
            try:
                self._journal(c[0], now_, _KIND_CONFIRM, _RESULT_COMMIT_ANSWER, c[2], c[1], c[3])
            except (
                Exception
            ) as e:  # pending in flash: resolved when the card returns, or by the host
                self.log_error("tap", e)
        crypto.forget()  # the tap's ciphers (the confirm's too): nothing of them stays between taps
        self.taps += 1
        self.board.stat(
            "tap apdus=%d ms=%d alloc=%d heap_used=%d heap_free=%d peak=%d"
            % (
                self.card.apdus - apdus0,
                time.ticks_diff(time.ticks_ms(), t0),
                gc.mem_alloc() - heap0,
                heap0,
                gc.mem_free(),
                max(self._peak, gc.mem_alloc()),  # heap in use at its highest, garbage counted
            )
        )

    def _exchange(self, frame):
        """The card's transceive (the reader's InDataExchange), where the tap's garbage is collected
        once it passes _TAP_GARBAGE: a tap then needs what is live plus that much, not its whole
        garbage (a charge makes ~18 KB of it on the 64-bit VM). 1 KB: about one collection per
        exchange (a charge has 9; ~1-2 ms each on an ESP32). The highest use before a collection is
        the tap's peak (its STAT line)."""
        self._collect()
        return self.reader.exchange(frame)

    def _collect(self):
        a = gc.mem_alloc()
        if a - self._gmark > _TAP_GARBAGE:
            if a > self._peak:
                self._peak = a
            gc.collect()
            self._gmark = gc.mem_alloc()

    def _tap(self, uid):
        card = self.card
        now = self.board.clock.time()
        try:
            card.select_application(citizen.AID)
        except desfire.CardError as e:
            if e.status == desfire.APPLICATION_NOT_FOUND:
                self.show(_t(msg.FOREIGN), _t(msg.NOT_CITIZEN), "refused")
                return
            raise
        self._auth(uid)
        # Card info is read inside the authenticated session: the answer carries the session's
        # CMAC (verified by card_schema.desfire), so a relay cannot change holder, status or expiry.
        info = citizen.unpack_card_info(
            card.read_data(citizen.FILE_INFO, 0, citizen.INFO_SIZE, desfire.MODE_MAC)
        )
        trips = self._trips(card, uid)
        last = citizen.unpack_trip(trips) if trips else None
        counter = last[citizen.TR_COUNTER] if last else 0
        tbal = last[citizen.TR_BALANCE] if last else -1
        mem = self.mem
        i = mem.find(uid)
        if i >= 0:
            if mem.get(i)[1] & _PENDING:
                from firmware import pending  # the rare path, forgotten after (RAM)

                try:
                    if pending.run(self, uid, i, trips, counter, now):
                        return
                finally:
                    firmware.forget("pending")
            if not mem.check(i, counter, tbal):  # a restored card image or a clone
                self._refuse(uid, counter, tbal, taprecord.KIND_DENIED, _RESULT_ROLLBACK, now)
                self.show(_t(msg.DENIED), _t(msg.OFFICE), "refused")
                return
        if info[citizen.CI_STATUS] == citizen.STATUS_BLOCKED or (
            last and last[_TR_FLAGS] & _FLAG_BLOCKED
        ):
            self._refuse(uid, counter, -1, taprecord.KIND_DENIED, taprecord.RESULT_BLOCKED, now)
            self.show(_t(msg.BLOCKED), _t(msg.OFFICE), "refused")
            return
        if info[citizen.CI_EXPIRY] and info[citizen.CI_EXPIRY] < now:
            self._refuse(uid, counter, -1, taprecord.KIND_DENIED, taprecord.RESULT_EXPIRED, now)
            self.show(_t(msg.EXPIRED), _t(msg.OFFICE), "refused")
            return
        action = self._deny_action(uid) if self.deny else -1
        if action >= 0:
            if action == denylist.ACTION_BLOCK and not self.journal.full:
                self._block(uid, counter, now)
            else:
                self._refuse(uid, counter, -1, taprecord.KIND_DENIED, _RESULT_DENYLIST, now)
            self.show(_t(msg.DENIED), _t(msg.OFFICE), "refused")
            return
        # a card's first tap here: its issuer signature read and checked (while the tap's heap is
        # low), judged with the balance below
        c = self._ceiling(uid, -1) if self.issuer else _UNSIGNED
        if self.table is None:
            self.show(_t(msg.NO_SERVICE), _t(msg.NO_FARES), "error")
            return
        prof = self.prof
        fare, flags = prof.price(
            self.table, self.line, info[_CI_HOLDER], now, trips, self.terminal_id
        )
        if (
            fare > 0
            and last
            and last[_TR_KIND] == citizen.TRIP_DEBIT
            and last[citizen.TR_TERMINAL] == self.terminal_id
            and last[citizen.TR_AMOUNT] == fare
            and 0 <= now - last[citizen.TR_TIME] < self.table.get("repeat", _DEFAULT_REPEAT)
        ):
            fare = _REPEAT  # the same card, amount and terminal at once: a retry after a cut
        if fare == _REPEAT and last:
            mem.update(self.journal.head_seq, 0, 0, uid, counter, 0, tbal, 0)
            self.show(_t(msg.PAID), _t(msg.BALANCE) + " " + _money(last[citizen.TR_BALANCE]), "ok")
            return
        if fare == _WAIT:
            self.show(_t(getattr(prof, "WAIT_MSG", msg.ENTER)), "", "refused")
            return
        if fare == _OWN:  # e.g. the POS refund (firmware/profile_pos.py)
            prof.own(self, uid, last, counter, now)
            return
        if fare < 0:
            self.show(_t(msg.NO_SERVICE), _t(msg.NO_FARE), "error")
            return
        balance = card.get_value(citizen.FILE_PURSE, desfire.MODE_ENC)
        # the issuer's signature: no office signed this card (-1: made with a stolen debit key,
        # or unsigned), or its balance is above the ceiling signed (value added outside the office;
        # or topped up since this terminal checked it: read again)
        if balance > c >= 0:
            c = self._ceiling(uid, balance)
        if balance > c:
            self._refuse(uid, counter, balance, taprecord.KIND_DENIED, _RESULT_SIG - (c < 0), now)
            self.show(_t(_BAD_VALUE - (c < 0)), _t(msg.OFFICE), "refused")
            return
        if balance < fare:
            self._refuse(
                uid,
                counter,
                balance,
                taprecord.KIND_REFUSED,
                taprecord.RESULT_INSUFFICIENT,
                now,
                fare,
            )
            self.show(_t(msg.INSUFFICIENT), _t(msg.BALANCE) + " " + _money(balance), "refused")
            return
        if self.journal.room < 2:  # the charge and its CONFIRM
            raise journal.JournalFull("journal full")
        new_balance = balance - fare
        counter += 1
        if fare:
            card.debit(citizen.FILE_PURSE, fare, desfire.MODE_ENC)
        self.write_trip(counter, now, fare, new_balance, flags)
        self.commit(uid, now, taprecord.KIND_CHARGE, counter, fare, new_balance)
        self.show(
            self.on_ok(fare, flags) if self.on_ok else _t(msg.OK) + "  -" + _money(fare),
            _t(msg.BALANCE) + " " + _money(new_balance),
            "ok",
        )
        if self.on_done:
            self.on_done(self, fare)

    def _ceiling(self, uid, balance):
        """The ceiling (Rial) the issuer signed for this card, -1 when it has no valid signature
        (or none, and require_issuer_sig is set; else such a card rides: _UNSIGNED). From the RAM
        ring of checked cards (`_sigs`) when it is at least `balance`; else file 0x05 is read (5
        frames, in the tap's session) and checked with the issuer's public key (RSA-2048:
        card_schema.issuersig, imported for this and forgotten after, as are its big ints)."""
        t = self._sigs
        last = uid[6]
        for o in range(0, _SIG_CARDS * 12, 12):
            if t[o + 6] == last and t[o : o + 7] == uid:
                c = struct.unpack_from("<i", t, o + 8)[0]
                if c >= balance:
                    return c
                t[o + 6] ^= 0xFF  # the card's entry is void: checked again
        try:
            raw = self.card.read_data(_FILE_SIG, 0, _SIG_SIZE, desfire.MODE_MAC)
        except desfire.CardError as e:
            if e.status != _FILE_NOT_FOUND:
                raise
            self._auth(uid)  # an error status ends the card's session
            return -1 if t[-1] & 1 else _UNSIGNED  # issued before cards were signed
        from card_schema import issuersig

        try:
            c = issuersig.check(self.issuer, uid, raw)
        finally:
            sys.modules.pop("card_schema.issuersig", None)
            sys.modules["card_schema"].__dict__.pop("issuersig", None)
        del raw, issuersig
        self._collect()  # the module and the check's big ints are garbage now
        if c >= 0:
            n = t[-2]
            t[-2] = (n + 1) % _SIG_CARDS
            o = n * 12
            t[o : o + 7] = uid
            struct.pack_into("<i", t, o + 8, c)
        return c

    def _auth(self, uid):
        self.card.authenticate_aes(
            citizen.KEY_DEBIT, diversify_aes128(self.debit_master, citizen.div_input(uid))
        )

    def _trips(self, card, uid):
        """The newest trip records, newest first: the newest alone, or up to the profile's HISTORY
        when the newest is not a ride (None for a card without records)."""
        try:
            raw = card.read_records(citizen.FILE_TRIPS, 0, 1, citizen.TRIP_SIZE, desfire.MODE_MAC)
        except desfire.CardError as e:
            if e.status == desfire.BOUNDARY_ERROR:  # no record yet: a new card
                self._auth(uid)  # an error status ends the card's session
                return None
            raise
        n = min(self.prof.HISTORY, citizen.unpack_trip(raw)[citizen.TR_COUNTER]) - 1
        if n <= 0 or citizen.unpack_trip(raw)[_TR_KIND] == citizen.TRIP_DEBIT:
            return raw
        try:
            more = card.read_records(citizen.FILE_TRIPS, 1, n, citizen.TRIP_SIZE, desfire.MODE_MAC)
        except desfire.CardError as e:
            if e.status != desfire.BOUNDARY_ERROR:  # fewer records than the counter says
                raise
            self._auth(uid)
            return raw
        return raw + more

    def write_trip(self, counter, now, amount, balance, flags, kind=citizen.TRIP_DEBIT):
        """Stage the card's new trip record (this terminal, line, stop, zone and profile; counter is
        the new card transaction counter). Staged until commit()."""
        citizen.pack_trip_into(
            self._trip,
            counter,
            now,
            self.terminal_id,
            amount,
            balance,
            self.line,
            self.stop,
            kind,
            self.prof.PROFILE,
            self.zone,
            flags,
        )
        self.card.write_record(citizen.FILE_TRIPS, 0, self._trip, desfire.MODE_MAC)

    def _block(self, uid, counter, now):
        """Deny-list entry with the block action: mark the card (see the module doc) and journal it."""
        card = self.card
        balance = card.get_value(citizen.FILE_PURSE, desfire.MODE_ENC)
        counter += 1
        self.write_trip(counter, now, 0, balance, _FLAG_BLOCKED)
        self._journal(uid, now, taprecord.KIND_DENIED, _RESULT_DENYLIST, counter, 0, balance)
        card.commit_transaction()

    def commit(self, uid, now, kind, counter, amount, balance):
        """Journal the staged card change (a taprecord KIND_* record, result OK; durable), then commit
        it on the card. Durable first: a cut in between leaves a record the host can see (module
        doc). The card's MACed answer confirms it (a CONFIRM record once the rider saw the OK); a
        missing, late or damaged answer leaves it pending: the terminal checks the card at once,
        and whenever the card comes back (firmware/pending.py)."""
        seq = self._journal(uid, now, kind, taprecord.RESULT_OK, counter, amount, balance)
        try:
            self.card.commit_transaction()
        except Exception as e:
            if isinstance(e, pn532.CardGone) and e.args[1:] == (_NO_TARGET,):
                # the chip had no activated target: the frame never went out, nothing can have
                # happened on any card
                self._journal(uid, now, taprecord.KIND_VOID, _RESULT_NOT_SENT, counter, seq, -1)
                raise
            self.log_error("commit", e)  # sent, no valid answer: it may or may not have committed
            raise pn532.CardGone("commit answer", _PEND)
        self.pending = (uid, seq, counter, balance)

    def _journal(self, uid, now, kind, result, counter, amount, balance):
        self._collect()  # the card session's garbage, before the record's MAC and flash write
        seq = self.journal.append(
            now,
            uid,
            kind,
            result,
            self.prof.PROFILE,
            self.zone,
            counter,
            amount,
            balance,
            self.line,
            self.stop,
            getattr(self.prof, "duration", 0),
            self.tariff_ver,
            self.deny_ver,
            1 - self.board.clock.ok,  # flags: taprecord_host.FLAG_CLOCK_UNSET is bit 0
        )
        self.mem.update(seq, kind, result, uid, counter, amount, balance, now)
        return seq

    def _refuse(self, uid, counter, balance, kind, result, now, amount=0):
        if self.journal.full:
            return  # refusals are not money: never block on them
        self._journal(uid, now, kind, result, counter, amount, balance)


def _diag(term, ftype, body):
    """Requests of firmware/diag.py (`tapkit diag`); imported only while it answers (RAM)."""
    if ftype != _DIAG:
        return None
    diag = firmware.load("diag")
    try:
        return diag.answer(term, body)
    finally:
        firmware.forget("diag")


def _forget_schema(*names):
    """Forget card_schema modules a rare job loaded (as firmware.forget does for firmware's)."""
    import card_schema

    for n in names:
        sys.modules.pop("card_schema." + n, None)
        card_schema.__dict__.pop(n, None)


def run(board_path="board.json", config_path="config.json", keys_path="keys.json", max_loops=0):
    """Boot and run the main loop. `max_loops` > 0 stops after that many passes (tests)."""
    board = hal.load(board_path)
    term = firmware.load("start").boot(Terminal, board, config_path, keys_path)
    firmware.forget("start")
    n = 0
    mark = gc.mem_alloc()
    while True:
        r = term.responder  # loaded while a host talks (sync_responder)
        asked = r.requests if r else -1
        r = None  # no reference to it from here during the pass: a tap forgets it
        try:
            term.poll()
        except KeyboardInterrupt:
            raise
        except Exception as e:  # last line of defence: the loop goes on
            term.log_error("loop", e)
        n += 1
        # Collect as the idle loop's garbage grows, not only when the heap runs out: the heap then
        # stays in one piece (garbage left to pile up until the heap is full leaves every later
        # long-lived object in its own hole: a Wi-Fi terminal ended with 26 KB free and no 1 KB
        # block). A pass makes little garbage; 4 KB of it is a collection every few seconds.
        if gc.mem_alloc() - mark > _IDLE_GARBAGE:
            gc.collect()
            mark = gc.mem_alloc()
        if max_loops and n >= max_loops:
            return term
        # a host streaming a sync keeps several requests in the console buffer: take the next one
        # at once (the reader is still polled every pass); otherwise rest until the next pass
        r = term.responder  # None: not loaded, or forgotten by this pass's tap (rest as before)
        if r is None or r.requests == asked:
            time.sleep_ms(20) if hasattr(time, "sleep_ms") else time.sleep(0.02)


if __name__ == "__main__":
    run(*sys.argv[1:])
