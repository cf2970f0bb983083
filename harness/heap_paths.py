"""Peak heap of every tap path on virtual terminals (112 KB heap): the bench's `heap.worst_path`
and tests/e2e/test_heap_paths.py.

    paths = heap_paths(tmp_dir)         # {"charge": {"alloc", "heap_used", "heap_free"}, ...}
    worst(paths)                        # {"path": "blocked", "heap_free": 17216}

The firmware collects before each tap and as its garbage grows past 1 KB inside it; its `STAT| tap
... peak=` line says the most the heap held before one of those collections, garbage counted, so
heap_free = 112 KB - peak is what the tap leaves free at its peak (a conservative figure: the boards
run with a 1 MB heap so that no automatic collection hides part of it).

Paths: charge, refused (insufficient balance), denied (deny list), blocked (a deny entry with the
block action marks the card; then the marked card), expired, pending (the commit's answer lost, the
card comes back: it did commit), void (the commit never reached the card: voided and charged
afresh), refund (POS: the last sale given back), parking in and out, journal full. usb_paths: taps
while a host talks over USB (mid-sync, after an INSTALL); wifi_paths: a Wi-Fi board's charge.
"""

import json
import os
import time

HEAP = "112K"
MEASURE_HEAP = "1M"
FARE = 25000


def _keystore(work):
    """The issuer keystore the paths share in `work` (made once): (path, keystore)."""
    from host_tools import keystore

    ks_path = os.path.join(work, "ks.json")
    if not os.path.exists(ks_path):
        keystore.init(ks_path)
    return ks_path, keystore.load(ks_path)


def _size(heap):
    """The firmware's heap on an ESP32 with `heap` ("112K"), as the virtual board gives it: the
    board's MicroPython has the stand-in errno and socket modules' cost on top (vboard.heap_bytes),
    and a tap's peak counts them, so free = this - peak is what the chip would have free."""
    from emulator.vboard import heap_bytes

    return heap_bytes(heap)


def _stat(vb, mark, path, total):
    from harness.boards import tap_stats

    stat = [ln for ln in vb.lines(mark) if ln.startswith("STAT| tap ")]
    if not stat:
        raise AssertionError("%s: no STAT line" % path)
    s = tap_stats({"stat": stat[-1]})
    free = total - s["peak"]
    return {"alloc": s["alloc"], "heap_used": s["heap_used"], "heap_free": free}


def _tap(vb, card, path, out, total, want=None):
    mark = vb.mark()
    r = vb.tap(card)
    if want and want not in r["display"]:
        raise AssertionError("%s: the tap showed %r, expected %r" % (path, r["display"], want))
    out[path] = _stat(vb, mark, path, total)
    return r


def heap_paths(work, heap=HEAP, only=None, room=MEASURE_HEAP):
    """Run every path (or those named in `only`) on fresh virtual boards under `work`. The boards
    run with `room` (1 MB), so that no collection runs inside a tap but the firmware's own, and its
    peak is all it held; heap_free is reported for `heap` (112 KB), the ESP32's."""
    from emulator.card import DESFireCard
    from harness.boards import deployed_board, rider_card
    from host_tools import keystore

    total = _size(heap)
    heap = room
    ks_path = os.path.join(work, "ks.json")
    keystore.init(ks_path)
    ks = keystore.load(ks_path)
    out = {}
    want = set(only or PATHS)

    def card(name, balance=500000, valid=86400):
        return rider_card(os.path.join(work, name + ".card"), ks, balance, valid=valid)

    def uid(path):
        return DESFireCard.load(path).uid.hex().upper()

    bus_paths = {"charge", "refused", "denied", "blocked", "expired", "pending", "void"}
    if want & bus_paths:
        rich, poor = card("rich"), card("poor", balance=1000)
        listed, stolen = card("listed"), card("stolen")
        old = card("old", valid=-3600)
        deny = {uid(listed): "refuse", uid(stolen): "block"}
        with deployed_board(
            os.path.join(work, "bus"), ks, 1001, heap=heap, fare=FARE, deny=deny
        ) as vb:
            _tap(vb, rich, "charge", out, total, "OK")
            _tap(vb, poor, "refused", out, total)
            _tap(vb, listed, "denied", out, total)
            _tap(vb, stolen, "block", out, total)  # the deny entry marks the card...
            _tap(vb, stolen, "blocked", out, total)  # ...which every terminal then refuses
            if out["block"]["heap_free"] < out["blocked"]["heap_free"]:
                out["blocked"] = out["block"]
            del out["block"]
            _tap(vb, old, "expired", out, total)
            # fresh cards: a card charged within the repeat window is "Already paid" whatever
            _torn(vb, card("torn1"), "pending", "after", out, total)
            _torn(vb, card("torn2"), "void", "before", out, total)
    if "refund" in want:
        buyer = card("buyer")
        with deployed_board(
            os.path.join(work, "pos"), ks, 3001, heap=heap, fare=0, profile="pos",
            fares={"max": 500000, "refund": 600},
        ) as vb:  # fmt: skip
            vb.press("15000#")
            vb.tap(buyer)
            vb.press("R#")
            _tap(vb, buyer, "refund", out, total, "+15,000")
    if want & {"parking in", "parking out"}:
        car = card("car")
        rule = {"grace": 10, "steps": [[60, 20000], [120, 50000]], "hourly": 30000, "cap": 200000}
        table = {"zones": {"1": rule}, "repeat": 30}
        with deployed_board(
            os.path.join(work, "park"), ks, 7001, heap=heap, fare=0, profile="parking", zone=1,
            fares=table, sync_idle_ms=500,
        ) as vb:  # fmt: skip
            _set_clock(vb, ks, int(time.time()))
            _tap(vb, car, "parking in", out, total, "Parking started")
            _set_clock(vb, ks, int(time.time()) + 95 * 60)
            _tap(vb, car, "parking out", out, total, "Parked")
    if "journal full" in want:
        _journal_full(work, ks, card("late"), heap, out, total)
    return {p: out[p] for p in PATHS if p in out}


def _set_clock(vb, ks, unix):
    """SET_CLOCK over the USB serial (a tagged control), then wait until the terminal has forgotten
    its sync code (config sync_idle_ms, 500 here): the taps are measured as on a terminal no host
    talks to."""
    from host_tools import keystore
    from host_tools.fleet.link import SerialLink

    with SerialLink(vb.port) as link:
        link.key = keystore.terminal_key(ks, link.identify()["terminal_id"])
        link.set_clock(unix)
    time.sleep(1.0)


def _torn(vb, card_path, path, mode, out, total):
    """The field drops at the commit (frame 9): "after" the card committed (its answer is lost),
    or "before" it did; the rider taps again and that tap resolves the pending charge."""
    from emulator.card import DESFireCard

    from harness.boards import SigFrames

    card = DESFireCard.load(card_path)
    frames = []
    sig = SigFrames()  # the first tap's issuer signature read is not counted

    def tear(c, f):
        if sig(f):
            return None
        frames.append(f)
        return mode if len(frames) == 9 else None

    card.tear = tear
    try:
        vb.tap(card)
    finally:
        card.tear = None
    # committed: the card's trip log says so ("Already paid"); not committed: charged afresh
    _tap(vb, card, path, out, total, "Already paid" if mode == "after" else "OK")


def _journal_full(work, ks, late, heap, out, total):
    """A journal of 2 sectors filled by the terminal's own key (as tests/e2e/test_journal_full.py);
    the next paid tap is refused before the debit."""
    from emulator import lfsimage
    from emulator.vboard import VirtualBoard
    from harness import vm
    from harness.boards import deploy
    from host_tools.fleet import provision

    state = deploy(os.path.join(work, "full"), ks, 1002, fare=FARE)
    img = os.path.join(state, "fs.img")
    import boards

    board = boards.spec("unix-virtual")
    board["journal"]["size"] = 2 * 4096
    board["reader"]["port"] = 0  # wired by the board host at start ($TAPKIT_PN532_PORT)
    lfsimage.write_files(img, {"/board.json": json.dumps(board)})
    key = provision.terminal_keys(ks, 1002)["journal"]
    flash = os.path.join(state, "flash.bin")
    emu = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emulator")
    vm.run(vm.build(os.path.join(work, "build")), vm.script("journal_fill"), flash, 8192, key,
           1002, 120, path=[emu], check=True)  # fmt: skip
    with VirtualBoard(state, heap=heap) as vb:
        _tap(vb, late, "journal full", out, total, "full")


PATHS = (
    "charge",
    "refused",
    "denied",
    "blocked",
    "expired",
    "pending",
    "void",
    "refund",
    "parking in",
    "parking out",
    "journal full",
)


USB_PATHS = ("usb sync, charge", "usb sync, refused", "usb sync, denied", "usb install, charge",
             "usb install, denied")  # fmt: skip


def usb_paths(work, heap=HEAP, room=MEASURE_HEAP, cards=1000):
    """Taps while a host talks to the terminal over USB (`tapkit sync`'s link; the sync responder is
    loaded from a host's first line until sync_idle_ms, 20 s, of silence): in the middle of a sync
    (IDENTIFY and a PULL answered, the ACK not yet sent: a charge, a refusal, a deny-list refusal),
    and right after an INSTALL of a `cards`-card deny list (the list's size does not show in the
    tap's heap: a city's 100,000 cards, 800 KB, measured within 100 B of 1,000's, in 2 minutes)."""
    from card_schema import signed, signed_host, tariff
    from emulator.card import DESFireCard
    from harness.boards import deployed_board, rider_card
    from host_tools import keystore
    from host_tools.fleet.link import SerialLink

    total = _size(heap)
    ks_path, ks = _keystore(work)
    tid = 1201

    def card(name, balance=500000):
        return rider_card(os.path.join(work, "usb-" + name + ".card"), ks, balance)

    rich, poor, listed, later = card("rich"), card("poor", 1000), card("listed"), card("later")
    uid = DESFireCard.load(listed).uid
    entries = {bytes([4]) + (i * 7919 + 1).to_bytes(6, "big"): i % 2 for i in range(cards)}
    entries[uid] = tariff.ACTION_REFUSE
    blob = signed_host.seal_fast(
        keystore.config_key(ks, tid), signed.KIND_DENY, 2, tariff.pack_deny(entries)
    )
    out = {}
    with deployed_board(
        os.path.join(work, "usb"), ks, tid, heap=room, fare=FARE, deny={uid.hex(): "refuse"}
    ) as vb:
        with SerialLink(vb.port, timeout=30.0) as link:
            link.key = keystore.terminal_key(ks, tid)
            for c, path, want in ((rich, "charge", "OK"), (poor, "refused", None),
                                  (listed, "denied", None)):  # fmt: skip
                head = link.identify()["head_seq"]
                link.pull(max(1, head))  # mid-sync: the records pulled, not acked yet
                _tap(vb, c, "usb sync, " + path, out, total, want)
                link.ack(head)
            assert link.install(blob) == (signed.KIND_DENY, 2)
            _tap(vb, later, "usb install, charge", out, total, "OK")
            _tap(vb, listed, "usb install, denied", out, total)
            if link.identify()["deny_ver"] != 2:
                raise AssertionError("usb install: the deny list was not installed")
        bad = [ln for ln in vb.lines(0) if "MemoryError" in ln]
        if bad:
            raise AssertionError("usb: %s" % bad[0])
    return out


WIFI_PATHS = ("wifi, server down", "wifi, uploading", "wifi, uploaded")


def wifi_paths(work, heap=HEAP, room=MEASURE_HEAP):
    """A charge on a Wi-Fi board (firmware/wifi.py, the virtual board's loopback "Wi-Fi") into a
    real `tapkit serve` ingest (in-process, SQLite): while the server refuses connections, while
    the board uploads (the tap stops the exchange under way), and once all is uploaded."""
    from harness.boards import deploy, rider_card
    from emulator.vboard import VirtualBoard
    from host_tools.backoffice import ingest, server
    from host_tools.backoffice import store

    total = _size(heap)
    ks_path, ks = _keystore(work)
    tid = 1101
    url = "sqlite:///%s" % os.path.join(work, "wifi.db")
    port = _free_port()
    state = deploy(
        os.path.join(work, "wifi"), ks, tid, fare=FARE, server="127.0.0.1:%d" % port,
        upload_backoff_max_ms=2000, upload_idle_ms=1000, repeat=0,
    )  # fmt: skip
    rider = rider_card(os.path.join(work, "wifi.card"), ks, 500000)
    out = {}
    with VirtualBoard(state, heap=room, wifi=True) as vb:
        vb.wait_for("LOG| wifi: OSError", timeout=30, since=0)
        _tap(vb, rider, "wifi, server down", out, total, "OK")
        ing = ingest.Ingest(url, ks, [(tid, tid)], log=lambda m: None)
        running = server.Running(server.make_app(ing), "127.0.0.1", port)
        try:
            mark = vb.mark()
            _tap(vb, rider, "wifi, uploading", out, total, "OK")
            deadline = time.monotonic() + 60
            with store.open_store(url) as db:
                while db.count() < 4:  # both charges and their confirmations
                    if time.monotonic() > deadline:
                        raise AssertionError("wifi: the taps never arrived")
                    time.sleep(0.2)
            _tap(vb, rider, "wifi, uploaded", out, total, "OK")
        finally:
            running.stop()
            ing.close()
        bad = [ln for ln in vb.lines(mark) if "MemoryError" in ln]
        if bad:
            raise AssertionError("wifi: %s" % bad[0])
    return out


# The firmware's own main.py (mpybuild/cross.py MAIN_PY), with the heap sampled after each step of
# a Wi-Fi exchange (Terminal._upload, called once per main-loop pass while one is under way): in use
# as the step left it (garbage counted), then after a collection (live); the highest of each per
# exchange in a STAT line when it ends. The firmware is unchanged; only this main.py is the probe's.
PROBE_MAIN = """import gc
import firmware

firmware.warm()
import firmware.app

T = firmware.app.Terminal
step = T._upload
hi = [0, 0]


def _upload(self):
    step(self)
    a = gc.mem_alloc()
    gc.collect()
    hi[0] = max(hi[0], gc.mem_alloc())
    hi[1] = max(hi[1], a)
    if not self._wifi:
        self.board.stat("upload acked=%d live=%d peak=%d" % (self.journal.acked_seq, hi[0], hi[1]))
        hi[0] = hi[1] = 0


T._upload = _upload
firmware.app.run()
"""


def wifi_upload(
    work, records=2048, poll_s=None, probe=False, heap=HEAP, room=MEASURE_HEAP, timeout=300
):
    """`records` journal records (filled by the firmware's own Journal) uploaded by a Wi-Fi board
    (batches of firmware/wifi.py's _BATCH, encrypted with its wire key, streamed from flash) into a
    real `tapkit serve` ingest (in-process, SQLite); with `poll_s` a host asks IDENTIFY over USB
    every `poll_s` s meanwhile (the sync responder then is in the heap beside the uploader). With
    `probe` the board runs PROBE_MAIN on `room` (1 MB: no automatic collection) and its STAT lines
    give the exchanges' highest heap use: live (after a collection) and garbage counted (one
    step's garbage: the main loop collects between steps as its garbage passes 4 KB); heap_free
    = `heap` (112 KB, the ESP32's) - the live peak. Without it the board runs its own main.py on
    `heap` itself. Returns {records, stored, duplicates, seconds, identify} (and with the probe
    exchanges that acked records, live, peak, heap_free, heap_free_garbage); AssertionError when the records do not all
    arrive in `timeout` s, arrive twice, or the board logs a MemoryError."""
    import boards
    from emulator import lfsimage
    from emulator.vboard import VirtualBoard
    from harness import vm
    from harness.boards import deploy
    from host_tools.backoffice import ingest, server, store
    from host_tools.fleet import provision
    from host_tools.fleet.link import SerialLink

    total = _size(heap)
    ks_path, ks = _keystore(work)
    tid = 1102
    url = "sqlite:///%s" % os.path.join(work, "upload.db")
    port = _free_port()
    state = deploy(
        os.path.join(work, "upload"), ks, tid, fare=FARE, server="127.0.0.1:%d" % port,
        upload_backoff_max_ms=2000, upload_idle_ms=1000,
    )  # fmt: skip
    sectors = -(-records // 60) + 4  # 60 records a sector, room so the journal is not full
    board = boards.spec("unix-virtual")
    board["journal"]["size"] = sectors * 4096
    board["reader"]["port"] = 0  # wired by the board host at start ($TAPKIT_PN532_PORT)
    board["net"] = {"loopback": True}
    files = {"/board.json": json.dumps(board)}
    if probe:
        files["/main.py"] = PROBE_MAIN
    lfsimage.write_files(os.path.join(state, "fs.img"), files)
    key = provision.terminal_keys(ks, tid)["journal"]
    emu = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "emulator")
    vm.run(vm.build(os.path.join(work, "build")), vm.script("journal_fill"),
           os.path.join(state, "flash.bin"), sectors * 4096, key, tid, records, path=[emu],
           timeout=600, check=True)  # fmt: skip
    ing = ingest.Ingest(url, ks, [(tid, tid)], log=lambda m: None)
    running = server.Running(server.make_app(ing), "127.0.0.1", port)
    asked = 0
    try:
        with VirtualBoard(state, heap=room if probe else heap, wifi=True) as vb:
            t0 = time.monotonic()
            deadline = t0 + timeout
            link = SerialLink(vb.port, timeout=5) if poll_s else None
            try:
                with store.open_store(url) as db:
                    while db.count() < records:
                        if time.monotonic() > deadline:
                            raise AssertionError(
                                "wifi upload: %d of %d records in %d s (%d IDENTIFY)"
                                % (db.count(), records, timeout, asked)
                            )
                        if link is not None:
                            link.identify()
                            asked += 1
                        time.sleep(poll_s or 0.5)
                    took = time.monotonic() - t0
                    stored, distinct = db._one(
                        "SELECT COUNT(*), COUNT(DISTINCT seq) FROM taps WHERE terminal = ?", (tid,)
                    )
            finally:
                if link is not None:
                    link.close()
            lines = vb.lines(0)
    finally:
        running.stop()
        ing.close()
    bad = [ln for ln in lines if "MemoryError" in ln]
    if bad:
        raise AssertionError("wifi upload: %s" % bad[0])
    if stored != distinct:
        raise AssertionError("wifi upload: %d records stored twice" % (stored - distinct))
    out = {
        "records": records,
        "stored": int(stored),
        "duplicates": int(stored) - int(distinct),
        "seconds": took,
        "identify": asked,
    }
    if probe:
        stats = [_fields(ln) for ln in lines if ln.startswith("STAT| upload ")]
        acked = [0] + [st["acked"] for st in stats]
        out["exchanges"] = sum(1 for a, b in zip(acked, acked[1:], strict=False) if b > a)
        live = max(st["live"] for st in stats)
        peak = max(st["peak"] for st in stats)
        out.update(live=live, peak=peak, heap_free=total - live, heap_free_garbage=total - peak)
    return out


def _fields(line):
    return {k: int(v) for k, v in (f.split("=") for f in line.split() if "=" in f)}


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worst(paths):
    """The path with the least heap free at its peak: {"path", "heap_free"}."""
    name = min(paths, key=lambda p: paths[p]["heap_free"])
    return {"path": name, "heap_free": paths[name]["heap_free"]}
