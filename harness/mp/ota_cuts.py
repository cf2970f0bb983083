"""The firmware update's power-cut campaign on the MicroPython VM (harness/ota_cuts.py writes the
seed's files and runs this; tests/firmware/test_ota_cuts.py, `python -m bench ota`).

    micropython ota_cuts.py DIR SEED MODE A B

DIR (from the host): spec.json, old/<files> (the running set), bundle.bin (the sealed release),
boot.py (mpybuild/cross.py BOOT_PY). The board's filesystem is littlefs over the NOR flash model
(emulator/norflash.py), mounted at "/" as on the board; the journal is the firmware's Journal on a
second NOR chip. The update runs with the firmware's own modules (install.chunk for the INSTALL
chunks, otastate/ota for the boot's staging, trial, self-test, confirm or rollback, boot.py for the
set's choice), a whole update once without a cut (its flash writes counted: W), then again from
the same start with the power cut at write k (MODE linear: k = A..B-1; random: B cuts at seeded
points in 1..W, A their seed), a power-on after the cut, and the update carried on to its end
(the host resends what the terminal lacks, as `tapkit release install` resumes).
Checked after every power-on: the filesystem mounts, boot.py picks a folder that holds exactly the
old set or exactly the new one (every file's SHA-256, no file more or less), the journal is intact
(every record's CRC and MAC chain, none lost) and takes a tap; at the end the new set confirmed,
or the old one with the release rolled back (a broken self-test; a cut while it ran on trial).
Prints {"fail": ..., "id": "SEED:k"} lines and one {"seed", "writes", "cuts", ...} line.
"""

import gc
import hashlib
import json
import os
import sys

import vfs
from norflash import NORFlash, PowerCut
from norblocks import NORBlockDev

SIZE = 96 * 4096
JSIZE = 3 * 4096
TID = 1001
JKEY = bytes(range(16))
UID = b"\x04\x11\x22\x33\x44\x55\x66"
MODS = ("firmware.ota", "firmware.otastate", "firmware.install", "firmware.store")


class Wdt:
    def feed(self):
        pass


class Board:
    def __init__(self):
        self.wdt = Wdt()
        self.lines = []

    def log(self, msg):
        self.lines.append(msg)


class Reader:
    def __init__(self, broken):
        self.broken = broken

    def firmware_version(self):
        if self.broken:
            raise OSError(5, "broken driver")
        return (0x32, 1, 6, 7)


class Term:
    """What firmware/ota.py and otastate.py use of app.Terminal."""

    def __init__(self, key, journal, broken):
        self.config_key = key
        self.journal = journal
        self.reader = Reader(broken)
        self.board = Board()
        self.table = None
        self.info = {"board": "unix-virtual", "fares_ver": 0, "deny_ver": 0}
        self.errors = []

    def log_error(self, where, e):
        self.errors.append("%s: %s" % (where, e))


def sha(path):
    h = hashlib.sha256()
    buf = bytearray(512)
    with open(path, "rb") as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
    return "".join("%02x" % b for b in h.digest())


def files(folder):
    """{path: sha256 hex} of every file below /folder."""
    out = {}
    for top in ("firmware", "card_schema"):
        d = "/%s/%s" % (folder, top)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            out[top + "/" + n] = sha(d + "/" + n)
    return out


_COPY = bytearray(4096)


def copy(src, dst):
    buf = _COPY
    with open(src, "rb") as f, open(dst, "wb") as g:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            g.write(memoryview(buf)[:k])


class Rig:
    def __init__(self, host, spec):
        self.h = host  # the seed's directory, as the VM sees it after "/" became the board's
        self.spec = spec
        self.key = bytes.fromhex(spec["key"])
        self.marks = []  # (what, flash writes so far) of the uncut run: where each step's writes end
        with open(host + "/boot.py") as f:
            self.boot_code = compile(f.read(), "boot.py", "exec")
        with open(host + "/bundle.bin", "rb") as f:
            self.blob = f.read()

    # -- power ---------------------------------------------------------------------------------
    def on(self, img, jimg, cut=0, seed=1):
        self.fl = NORFlash(img, SIZE)
        self.fl.cut_after(cut, seed)
        self.jfl = NORFlash(jimg, JSIZE)
        # the root first: a path goes to the first mount that matches, and "/" matches every path
        vfs.umount("/_h")
        vfs.mount(vfs.VfsLfs2(NORBlockDev(self.fl)), "/")  # type: ignore[abstract, arg-type]
        vfs.mount(vfs.VfsPosix("/"), "/_h")  # type: ignore[attr-defined]
        os.chdir("/")

    def off(self):
        try:
            vfs.umount("/")
        except Exception:  # noqa: BLE001 - a cut chip: littlefs may fail to sync; the power is off
            pass
        self.fl.close()
        self.jfl.close()
        for m in MODS:
            sys.modules.pop(m, None)
        gc.collect()

    def mark(self, what):
        if self.marks is not None:  # the uncut run's only
            self.marks.append([what, self.fl.programs + self.fl.erases])

    def cut(self):
        return self.fl._cut < 0

    # -- the terminal ----------------------------------------------------------------------------
    def choose(self):
        """boot.py: the folder it puts where /lib was."""
        saved = sys.path[:]
        sys.path[:] = ["/lib"]
        try:
            exec(self.boot_code, {"__name__": "boot"})
            return sys.path[0][1:]
        finally:
            sys.path[:] = saved

    def journal(self):
        from firmware.journal import Journal

        return Journal(self.jfl, JKEY, TID)

    def boot(self, j, broken_new):
        """One power-on of the firmware: 'reset' (it reset itself) or 'up'; the folder it ran."""
        run = self.choose()
        what = self.check_set(run)  # what the firmware imports: before it runs (and stages)
        if what.startswith("mix"):
            return "mix", run, what
        term = Term(self.key, j, broken_new and run == self.spec["new_dir"])
        from firmware import otastate

        try:
            otastate.boot(term)
        except SystemExit:  # ota.reset(): machine.reset()
            return "reset", run, what
        finally:
            for m in MODS:
                sys.modules.pop(m, None)
        return "up", run, (what, term)

    def deliver(self, term):
        """The host sends the bundle (serial INSTALL bodies), resuming from what the terminal has."""
        import struct

        from firmware import install

        blob = self.blob
        total = len(blob)
        ans = install.chunk(self.key, struct.pack("<II", 0xFFFFFFFF, total) + blob[:13], term.info)
        off = struct.unpack("<IBI", ans)[0]
        if not 0 < off < total:
            off = 0
        n = self.spec["chunk"]
        try:
            while off < total:
                body = struct.pack("<II", off, total) + blob[off : off + n]
                off = struct.unpack("<IBI", install.chunk(self.key, body, term.info))[0]
        finally:
            sys.modules.pop("firmware.install", None)

    # -- checks ------------------------------------------------------------------------------------
    def check_set(self, run):
        have = files(run)
        if have == self.spec["old"]:
            return "old"
        if have == self.spec["new"]:
            return "new"
        same = [p for p in have if self.spec["old"].get(p) == have[p]]
        return "mix: %d files, %d of the old set" % (len(have), len(same))

    def tap(self, j, n):
        from card_schema import taprecord

        before = j.head_seq
        j.append_tap(
            time=1700000000 + n,
            uid=UID,
            kind=taprecord.KIND_CHARGE,
            amount=100 + n,
            balance=100000,
            line=12,
            stop=3,
        )
        if j.head_seq != before + 1:
            return "the tap was not journalled"
        return check_journal(j)

    def life(self, broken_new, stop_at_cut=True):
        """Power on and carry the update on until it ended (or the power is cut): (outcome, error)."""
        j = self.journal()
        why = check_journal(j)
        if why:
            return None, "journal after power-on: " + why
        tapped = False
        for _ in range(12):  # boots: stage, trial, confirm, and the resets between
            try:
                r, run, what = self.boot(j, broken_new)
            except PowerCut:
                return None, None
            if r == "mix":
                return None, "boot.py chose /%s: %s" % (run, what)
            if self.cut():
                return None, None
            self.mark("boot %s /%s" % (r, run))
            if r == "reset":
                continue
            what, term = what
            if not tapped:
                why = self.tap(j, len(self.spec["old"]))
                if why:
                    return None, "tap: " + why
                tapped = True
            s = json.load(open("ota.json")) if exists("ota.json") else None
            if what == "new" and s and s[1] == 2 and not (s[2] or s[3] or s[4]):
                return "confirmed", None
            if s and s[6] and s[6][0] == 2 and s[6][1] in (2, 3):  # rolled back, refused
                if what != "old":
                    return None, "release 2 %s but /%s runs the new set" % (s[6][2], run)
                return ("rolled back" if s[6][1] == 2 else "refused: " + s[6][2]), None
            try:
                self.deliver(term)  # the host (re)sends what the terminal lacks
            except PowerCut:
                return None, None
            except Exception as e:  # noqa: BLE001 - a refusal is the terminal's answer
                if self.cut():
                    return None, None
                return None, "INSTALL refused: %s" % e
            if self.cut():
                return None, None
            self.mark("install")
            # app.py: a verified release waits; at the safe moment ota.switch() resets
        return None, "the update did not end in 12 boots"


def exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def check_journal(j):
    from card_schema import taprecord

    nxt = j.tail_seq
    prev = taprecord.GENESIS_MAC if nxt == 1 else None
    while nxt <= j.head_seq:
        recs = j.records(nxt, 16)
        if not recs:
            return "records end at %d, head %d" % (nxt - 1, j.head_seq)
        for r in recs:
            if taprecord.seq_of(r) != nxt or not taprecord.crc_ok(r):
                return "bad record at seq %d" % nxt
            if prev is not None and not taprecord.mac_ok(r, prev, JKEY):
                return "MAC chain broken at seq %d" % nxt
            prev = bytes(r[52:60])
            nxt += 1
    return None


def setup(rig, d):
    """The start every run copies: the old set where it runs, ota.json as its history says, a
    journal with taps."""
    spec = rig.spec
    img, jimg = d + "/base.img", d + "/base.jnl"
    for p in (img, jimg):
        try:
            os.remove(p)
        except OSError:
            pass
    fl = NORFlash(img, SIZE)
    vfs.VfsLfs2.mkfs(NORBlockDev(fl))  # type: ignore[arg-type]
    fl.close()
    rig.on(img, jimg)
    old = spec["old_dir"]
    for top in ("firmware", "card_schema"):
        for p in ("/" + old, "/%s/%s" % (old, top)):
            if not exists(p):
                os.mkdir(p)
    for p in spec["old"]:
        copy("%s/old/%s" % (rig.h, p), "/%s/%s" % (old, p))
    if spec["start"]:
        with open("ota.json", "w") as f:
            json.dump(spec["start"], f)
    j = rig.journal()
    for n in range(5):
        rig.tap(j, n)
    rig.off()
    return img, jimg


def main(argv):
    d, seed, mode, a, b = argv[0], int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    # the seed's files and the modules through the host's root at /_h: "/" is the board's littlefs
    vfs.mount(vfs.VfsPosix("/"), "/_h")  # type: ignore[attr-defined]
    sys.path[:] = ["/_h" + p if p.startswith("/") else p for p in sys.path]
    d = "/_h" + d
    vfs.umount("/")
    with open(d + "/spec.json") as f:
        spec = json.load(f)
    rig = Rig(d, spec)
    bad = spec["bad"]
    img, jimg = setup(rig, d)
    work, jwork = d + "/work.img", d + "/work.jnl"
    copy(img, work)
    copy(jimg, jwork)
    rig.on(work, jwork)
    w0 = rig.fl.programs + rig.fl.erases
    outcome, err = rig.life(bad)
    writes = rig.fl.programs + rig.fl.erases - w0
    rig.off()
    want = "rolled back" if bad else "confirmed"
    if err or outcome != want:
        print(json.dumps({"fail": "no cut: %s (%s)" % (err, outcome), "id": "%d:0" % seed}))
        return
    if mode == "linear":
        points = list(range(max(1, a), min(b, writes + 1)))
    else:
        x = (a * 2654435761 + seed) & 0x7FFFFFFF
        points = []
        for _ in range(b):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            points.append(1 + (x >> 8) % writes)
    m = [[w, n - w0] for w, n in rig.marks]
    rig.marks = None  # type: ignore[assignment]
    out = {"seed": seed, "writes": writes, "steps": m, "cuts": 0, "fails": [], "outcomes": {}}  # type: dict
    for k in points:
        fid = "%d:%d" % (seed, k)
        gc.collect()
        copy(img, work)
        copy(jimg, jwork)
        rig.on(work, jwork, cut=k, seed=seed * 100003 + k)
        try:
            outcome, err = rig.life(bad)
        except PowerCut:
            outcome, err = None, None
        if not rig.cut() and not err:
            err = "write %d of %d was not cut" % (k, writes)
        rig.off()
        if not err:
            rig.on(work, jwork)  # power on again: the update goes on from where the cut left it
            try:
                outcome, err = rig.life(bad)
            except Exception as e:  # noqa: BLE001 - anything the terminal raises is a failure
                outcome, err = None, "%s: %s" % (type(e).__name__, e)
            rig.off()
            if not err and outcome not in (want, "rolled back"):
                err = "ended %s" % outcome
        out["cuts"] += 1
        if err:
            out["fails"].append(fid)
            print(json.dumps({"fail": err, "id": fid}))
        else:
            out["outcomes"][outcome] = out["outcomes"].get(outcome, 0) + 1
    print(json.dumps(out))


main(sys.argv[1:])
