"""The terminal's boot (firmware/app.py): config and keys read, the Terminal made, started and its
console locked, and the card memory replayed from the journal. Code that runs once, loaded for the
boot and forgotten after: the heap it took is the taps'.
"""

import gc
import struct
import time

from micropython import const

from card_schema import citizen, denylist, desfire, taprecord
from card_schema.compat import urandom

import firmware
from firmware import journal, msg, pn532

_WINDOW = const(240)  # journal records replayed into the card memory at boot
_SHOWS = const(4)  # = firmware.app._SHOWS
_SIG_CARDS = const(16)  # = firmware.app._SIG_CARDS
_MEM_CARDS = const(32)  # cards the terminal remembers (firmware.journal.Cards)
# The sync responder (firmware/serialsync.py, card_schema/frames.py: ~7.5 KB of heap) is loaded when
# a line arrives on the USB serial and forgotten after this much silence (config sync_idle_ms), so a
# terminal that no host talks to has that much more heap for its taps.
_SYNC_IDLE_MS = const(20000)


def boot(terminal, board, config_path, keys_path):
    """The started Terminal (class `terminal`) of `board`; never returns on a board that cannot
    start (not provisioned, a broken part): it stays up, diagnosable, and refuses taps."""
    from firmware import store  # config and keys, read once at boot: forgotten below (RAM)

    try:
        config = store.load(config_path)
        keys = store.load(keys_path)
        if config is None or keys is None:
            raise OSError(2, "no %s" % (keys_path if config else config_path))  # ENOENT
    except (OSError, ValueError) as e:
        # Not provisioned: stay up (sync and REPL still work) and say so.
        board.display.show("Not provisioned", "Run tapkit flash")
        board.log("boot: config missing or damaged: %s" % e)
        while True:
            board.wdt.feed()
            time.sleep(1)
    del store
    firmware.forget("store")
    try:
        # the garbage of booting (board file, config and keys JSON) goes first, so the terminal's
        # long-lived buffers are laid out low and the rest of the heap stays in one piece (without
        # this, 27 KB free on the VM were pieces of at most ~1 KB: a PULL line found no room)
        gc.collect()
        term = terminal(board, config, keys)
    except Exception as e:
        # A broken part (journal flash, keys) must not boot-loop the board: stay up, diagnosable over
        # the REPL, and refuse taps (a tap that cannot be journalled must not be charged).
        board.display.show("Out of service", "Terminal fault")
        board.log("boot: terminal failed to start: %s: %s" % (type(e).__name__, e))
        # a firmware set on trial that cannot start: back to the confirmed one (firmware/ota.py)
        firmware.load("ota").fail(None, "terminal failed to start: %s" % e)
        while True:
            board.wdt.feed()
            time.sleep(1)
    term.start()
    if config.get("console_lock"):  # in the field: the sync protocol only (MAINT opens it)
        from firmware import maint

        maint.lock(True)
        firmware.forget("maint")
        term._trim()  # the card_schema.frames maint imports
    firmware.load("otastate").boot(term)  # firmware/ota.py: its status, or the boot's job
    firmware.forget("otastate", "ota", "store")
    term._trim()
    board.log(
        "boot: terminal %d ready, journal head %d, %d unsynced"
        % (term.terminal_id, term.journal.head_seq, term.journal.unsynced)
    )
    return term


def setup(term, board, config, keys):
    """Terminal.__init__: its attributes are listed (typed) in its class."""
    term.board = board
    term.config = config
    term.terminal_id = int(config["terminal_id"])
    term.fare = int(config.get("fare", 0))
    term.line = int(config.get("line", 0))
    term.stop = int(config.get("stop", 0))
    term.tariff_ver = int(config.get("tariff_ver", 0))
    term.deny_ver = int(config.get("deny_ver", 0))
    term.errors = []  # diagnostics log: the last errors, bounded
    term.nerr = 0  # errors logged since boot (the log keeps only the last ones)
    # the last displays, for `tapkit diag --watch`: a ring of [n, time, line1, line2, sound]
    # (n counts every show since boot), preallocated and updated in place: a show allocates
    # nothing; the ring keeps at most _SHOWS texts alive
    term.shows = [[0, 0, "", "", None] for _ in range(_SHOWS)]
    term.shown = 0
    term.debit_master = _unhex(keys["debit"])
    term.config_key = _unhex(keys["config"]) if keys.get("config") else None
    # the issuer's public key (card_schema.issuersig) and the ring of cards checked (app._ceiling)
    term.issuer = _unhex(keys["issuer"]) if keys.get("issuer") else None
    term._sigs = bytearray(_SIG_CARDS * 12 + 2)
    term._sigs[-1] = 1 if config.get("require_issuer_sig") else 0
    msg.setup(config)
    term.profile = config.get("profile", "bus")
    # the profile and its optional hooks (the contract: module doc), looked up once
    p = term.prof = __import__("firmware.profile_" + term.profile, None, None, ("price",))
    term.on_key = getattr(p, "key", None) if board.keypad else None
    term.on_idle = getattr(p, "idle", None)
    term.on_ok = getattr(p, "ok", None)
    term.on_done = getattr(p, "done", None)
    term.zone = int(config.get("zone", 0))
    setup = getattr(p, "setup", None)
    if setup:
        setup(term)
    term.table = None
    term.deny = []  # [(open file, count)], newest kind last (the delta is looked up first)
    term._vers = ()  # the tables' versions loaded (firmware/tables.py)
    term._dbuf = bytearray(denylist.DENY_ENTRY)
    term.journal = journal.Journal(
        board.flash,
        _unhex(keys["journal"]),
        term.terminal_id,
        float(config.get("journal_high_water", 0.8)),  # warn above this fraction full
    )
    term._hw_fill = 0  # the fill (percent) last reported above the high-water mark
    # the cards seen recently and their pending charges, rebuilt from the journal
    term.mem = journal.Cards(_MEM_CARDS)
    term.reader = pn532.PN532(board.uart)
    term.card = desfire.DESFire(term._exchange, wrapped=False)
    term._gmark = term._peak = 0  # the tap's heap: in use at the last collection, and at most
    term.info = {
        "terminal_id": term.terminal_id,
        "fw": firmware.VERSION,
        "config_ver": int(config.get("config_ver", 0)),
        "profile": term.profile,
        "board": board.name,
    }
    term.responder = None  # the sync responder while a host talks (sync_responder)
    term.sync_requests = 0  # requests answered by responders already forgotten (diag)
    term._heard = time.ticks_ms()  # of the last console line
    term._held = None  # a line that stopped the Wi-Fi exchange: answered on the next pass
    term._sync_idle = int(config.get("sync_idle_ms", _SYNC_IDLE_MS))
    # the USB controls' state (firmware/serialsync.py "auth", firmware/maint.py) lives here, not
    # in the responder that is loaded and forgotten: [nonce (fresh per boot and per clock set),
    # untagged clock seconds left this boot, (tag, answer) of the last tagged SET_CLOCK,
    # controls refused, alarm (logs a refused control), maintenance window]
    term.auth = [urandom(8), 300, None, 0, term.log_error, None]
    # the Wi-Fi uploader (firmware/wifi.py, loaded only while an exchange is under way): its
    # state between exchanges, [next try (ticks), back-off, wire key, install.part, address,
    # firmware release offered (-1: report the firmware status first), the last was POST /v1/ota]
    term.up = [time.ticks_ms(), 0, None, None, None, -1, 0] if board.net is not None else None
    term._wifi = False  # an exchange is under way (the module is loaded)
    term.last_sync = 0  # when a host last acknowledged taps (diag)
    term.booted = time.ticks_ms()
    term.load_tables()
    term.present_uid = None  # card still in the field after its tap (not charged again)
    # the card committed in this tap (no message may then say "no charge"): (uid, seq, counter,
    # balance) of the confirmation pending until the rider saw the OK, () when none is left
    term.pending = None
    term.taps = 0
    term._trip = bytearray(citizen.TRIP_SIZE)
    # last, once everything long-lived is allocated: the replay's garbage then sits above it
    # and goes in one collection (before, it left the heap in pieces: a 954-byte PULL line
    # found no room in 27 KB free)
    replay(term)  # the card memory, from the journal's newest records
    gc.collect()  # the replay's garbage goes in one collection


def _unhex(s):
    import binascii

    return binascii.unhexlify(s)


def replay(term):
    """The card memory (journal.Cards): the newest records replayed (journal module doc, Cards)."""
    j = term.journal
    for rb in j.scan(max(j.head_seq - _WINDOW + 1, 1)):
        t = struct.unpack_from(taprecord.FMT, rb, 0)
        term.mem.update(t[4], t[1], t[2], t[7], t[9], t[10], t[11], t[5])
