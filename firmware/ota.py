"""Firmware updates on the terminal (OTA): a signed release staged beside the running set, booted on
trial, confirmed by a self-test, rolled back by itself.

    install.apply(key, info)   # a complete, verified bundle (card_schema/release.py) in install.part
                               #   becomes ota.bin (its board checked), info["ota"][0] STAGING
    ota.boot(term)             # once at boot (app.py): confirm a trial set or roll it back; resume
    ota.step(term)             # one piece of a staging (boot() runs them)

Two firmware sets live on littlefs, each a folder with firmware/ and card_schema/ (.mpy): "lib"
(what `tapkit flash` writes) and "lib_b". boot.py (mpybuild/cross.py BOOT_PY) reads ota.json and
puts the chosen folder where "/lib" was in sys.path, so one set is imported whole, never a mixture.

ota.json, a JSON list (store.save: replaced atomically, a cut leaves the old state or the new; a
list, not an object: its keys would be names the VM interns for good, see docs "RAM on the board"):
    [0] run     the confirmed set's folder          [1] its release (0: as flashed)
    [2] stage   [release, folder, files done]: ota.bin being written into folder
    [3] staged  [release, folder]: complete, waiting for a safe moment
    [4] trial   [release, folder]: to boot on trial   [5] tries: boot.py sets 1 when it boots it
    [6] last    [release, result, reason]: how the last update ended (card_schema.release RESULTS)

The steps, and why a power cut at any write leaves a terminal that boots a whole, confirmed set:
1. download (the main loop's background, firmware/wifi.py or the serial INSTALL): chunks append to
   install.part (firmware/install.py, resumed from its length); neither set nor ota.json is touched.
2. install.apply: the whole blob verified where it lies (CMAC, this terminal's config key) and its
   board checked, then renamed ota.bin (atomic); info["ota"][0] STAGING.
3. the switch (app.py, the main loop): no tap for ota_quiet_ms, no card in the field, no pending
   charge, no host or Wi-Fi exchange under way: a reset.
4. boot(), the heap whole (a Wi-Fi board has ~5 KB left in its main loop with this module and a
   staging's buffers loaded: measured on the VM, so the files are written here, not in the loop):
   ota.bin verified again, the rest of its head checked (release newer than the running one and not
   one rolled back here; the installed fare table and deny list at least its minimum), `stage`
   written; the other folder emptied, each file appended to <path>.part in pieces, read back and
   hashed against the signed head's SHA-256, renamed to <path>, `stage` counting the files done (a
   cut redoes one file); then `staged`, ota.bin removed, `trial` set, a reset. The running folder is
   never written, nor is the journal (a raw partition).
5. boot.py sets tries 1 (atomically) and boots the new folder; boot() runs its self-test (the reader
   chip answers, the journal mounted, the fare table verifies with the config key), then `run` :=
   the new folder, `last` confirmed, a reset (the next boot runs the set with nothing of this
   module in RAM); or records why not and resets into the old set. A crash before
   that (main.py resets a trial set that raises), a hang (the watchdog) or a cut: boot.py finds
   tries 1 and boots `run`, `last` rolled back.
info["ota"] = [state, running release, staged release, last release, last result, reason] is in
IDENTIFY and diag, and reaches the server over Wi-Fi (POST /v1/ota, firmware/wifi.py). Imported only
while there is work (app.py): a terminal that runs its set costs nothing of it.
"""

import hashlib
import os
import sys
import time

from card_schema.compat import const
from firmware import store

_STATE = const("ota.json")
_BIN = const("ota.bin")
_HEADER = const(13)  # = card_schema.signed.HEADER
_HEAD = const(58)  # = card_schema.release.HEAD
_ENTRY = const(68)  # = card_schema.release.ENTRY
_MAGIC = const(b"TKR1")  # = card_schema.release.MAGIC
_STEP = const(4096)  # bytes staged per pass of the main loop
_BUF = const(512)  # one read of ota.bin, one append
_STAGING = const(2)  # = card_schema.release.STAGING (and NO_UPDATE 0, STAGED 3, TRIAL 4)
_CONFIRMED = const(1)  # = card_schema.release.CONFIRMED
_ROLLED_BACK = const(2)  # = card_schema.release.ROLLED_BACK
_REFUSED = const(3)  # = card_schema.release.REFUSED

_job = None  # the staging under way: [rel, folder, file, bytes of it, where in ota.bin, count,
#              512-byte buffer, 68-byte entry buffer]


def state():
    """ota.json ([] padded: never updated)."""
    s = store.load(_STATE, None) or ["lib", 0, 0, 0, 0, 0, 0]
    return s


def _save(s, info):
    store.save(_STATE, s)
    st = 4 if s[4] else 3 if s[3] else 2 if s[2] else 0
    if not st:
        try:
            os.stat(_BIN)
            st = 2
        except OSError:
            pass
    p = s[4] or s[3] or s[2] or (0,)
    last = s[6] or (0, 0, "")
    info["ota"] = [st, s[1], p[0], last[0], last[1], last[2]]


def reset():
    """Reset the board: machine.reset() on an ESP32; exit code 12 on the virtual board (its host
    boots it again, emulator/vboard.py)."""
    if sys.platform == "esp32":
        import machine

        machine.reset()
    sys.exit(12)


def switch(term):
    """The main loop found a safe moment with a verified release waiting (app.py): reset, and the
    boot stages it."""
    term.board.log("ota: release %d verified: resetting to stage it" % term.info["ota"][2])
    reset()


def _str(b):
    return bytes(b).rstrip(b"\0").decode()


def _accept(term, f, n):
    """The head of the verified bundle in `f` (payload of `n` bytes): its release, or ValueError."""
    f.seek(_HEADER)
    h = f.read(_HEAD)
    s = state()
    i = term.info
    rel = int.from_bytes(h[4:8], "little")
    fares = int.from_bytes(h[48:52], "little")
    deny = int.from_bytes(h[52:56], "little")
    count = int.from_bytes(h[56:58], "little")
    why = ""
    if h[0:4] != _MAGIC:
        why = "not a firmware release"
    elif rel <= s[1]:
        why = "release %d is not newer than the running %d" % (rel, s[1])
    elif s[6] and s[6][0] == rel and s[6][1] == _ROLLED_BACK:
        why = "release %d was rolled back here" % rel
    elif i.get("fares_ver", 0) < fares or i.get("deny_ver", 0) < deny:
        why = "needs fares %d and deny list %d" % (fares, deny)
    else:
        total = _HEAD + count * _ENTRY
        for _ in range(count):
            e = f.read(_ENTRY)
            p = _str(e[0:32])
            if ".." in p or p.split("/")[0] not in ("firmware", "card_schema"):
                why = "file %s outside the set" % p
            total += int.from_bytes(e[32:36], "little")
        if not why and total != n:
            why = "file sizes do not add up"
    if why:
        s[6] = [rel, _REFUSED, why]
        _save(s, i)
        try:
            os.remove(_BIN)
        except OSError:
            pass
        raise ValueError(why)
    s[2] = [rel, "lib_b" if s[0] == "lib" else "lib", 0]
    s[3] = s[4] = 0
    _save(s, i)
    return s[2]


# --- boot --------------------------------------------------------------------------------------
def boot(term):
    """Once, after the terminal started, with the heap still whole: confirm or roll back a trial
    set; stage a release waiting in ota.bin (or resume its staging) and boot it on trial."""
    s = state()
    t = s[4]
    if t and s[5]:
        why = selftest(term)
        if why:
            fail(term, why)  # resets
        s[0], s[1], s[4], s[5] = t[1], t[0], 0, 0
        s[6] = [t[0], _CONFIRMED, ""]
        store.save(_STATE, s)
        term.board.log("ota: release %d confirmed (self-test passed): restarting clean" % t[0])
        reset()  # this module's names out of the qstr pool: the heap a running terminal expects
    if not s[2] and not s[3]:
        try:
            os.stat(_BIN)
        except OSError:
            _save(s, term.info)
            return  # nothing waits
        try:  # verified by install.apply; again here: nothing unverified is ever staged
            from card_schema import signed

            with open(_BIN, "rb") as f:
                kind, _, n = signed.verify_file(term.config_key, f, bytearray(_BUF))
                if kind != 4:  # card_schema.release.KIND_FIRMWARE
                    raise ValueError("not a firmware release")
                _accept(term, f, n)
        except ValueError as e:
            term.log_error("ota", e)
            return
    wdt = term.board.wdt
    t0 = time.ticks_ms()
    try:
        while step(term):
            wdt.feed()
    except OSError as e:  # flash full or failing: give the update up, keep the running set
        s = state()
        s[2] = 0
        s[6] = [s[6][0] if s[6] else 0, _REFUSED, "staging: %s" % e]
        _save(s, term.info)
        os.remove(_BIN)
        raise
    s = state()
    if s[3]:
        try:  # a cut between the staged state and its removal left it: it must not come back
            os.remove(_BIN)  # after this release ends (as "rolled back here", over the reason)
        except OSError:
            pass
        import gc

        term.board.log(
            "ota: release %d staged in %d ms (%d B heap free): booting it on trial from /%s"
            % (s[3][0], time.ticks_diff(time.ticks_ms(), t0), gc.mem_free(), s[3][1])
        )
        s[4], s[5], s[3] = s[3], 0, 0
        store.save(_STATE, s)
        reset()


def selftest(term):
    """ "" when the set on trial can serve taps, else why not."""
    try:
        term.reader.firmware_version()  # the reader chip answers
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return "reader: %s %s" % (type(e).__name__, e)
    j = term.journal
    if j is None or j.head_seq < j.acked_seq:
        return "journal not mounted"
    try:
        os.stat("fares.bin")
    except OSError:
        return ""  # the provisioned flat fare: nothing to verify
    from card_schema import signed

    try:
        if term.table is None:
            raise ValueError("not usable")
        with open("fares.bin", "rb") as f:
            signed.verify_file(term.config_key, f, bytearray(_BUF))
    except ValueError as e:
        return "fare table: %s" % e
    return ""


def fail(term, why):
    """The set on trial cannot serve (or start: `term` None): record why, reset into the
    confirmed one."""
    s = state()
    if s[4]:
        s[6] = [s[4][0], _ROLLED_BACK, why]
        s[4] = s[5] = 0
        store.save(_STATE, s)
        if term is not None:
            term.board.log("ota: release %d rolled back: %s" % (s[6][0], why))
        reset()


# --- staging and the switch (the main loop) ---------------------------------------------------
def step(term):
    """One bounded piece of the update; True while there is more to do."""
    global _job
    s = None
    if _job is None:
        s = state()
        if not s[2]:
            return False
        _job = _open(s[2])
    j = _job
    rel, folder, i, done, src, count = j[0], j[1], j[2], j[3], j[4], j[5]
    mv = memoryview(j[6])
    if i == 0 and done == 0:
        _empty(folder)
    if i < count:
        e = _entry(j, i)
        path = "/%s/%s" % (folder, _str(e[0:32]))
        size = int.from_bytes(e[32:36], "little")
        tmp = path + ".part"
        if done == 0:
            p = ""
            for d in path.split("/")[1:-1]:
                p += "/" + d
                try:
                    os.mkdir(p)
                except OSError:  # EEXIST
                    pass
            try:
                os.remove(tmp)
            except OSError:
                pass
        budget = _STEP
        with open(_BIN, "rb") as f:
            f.seek(src + done)
            while done < size and budget > 0:
                k = f.readinto(mv[0 : min(_BUF, size - done)])
                if not k:
                    raise OSError(5, "ota.bin short")  # EIO
                store.append(tmp, mv[0:k])
                done += k
                budget -= k
        j[3] = done
        if done < size:
            return True
        h = hashlib.sha256()
        with open(tmp, "rb") as f:
            while True:
                k = f.readinto(mv)
                if not k:
                    break
                h.update(mv[0:k])
        if h.digest() != bytes(_entry(j, i)[36:68]):
            _job = None
            s = state()
            s[2] = 0
            s[6] = [rel, _REFUSED, "file %s does not verify after writing" % path]
            _save(s, term.info)
            os.remove(_BIN)
            term.log_error("ota", ValueError(s[6][2]))
            return False
        store.rename(tmp, path)
        i += 1
        j[2], j[3], j[4] = i, 0, src + size
        s = state()
        s[2] = [rel, folder, i]
        store.save(_STATE, s)
        if i < count:
            return True
    s = s or state()
    s[2] = 0
    s[3] = [rel, folder]
    store.save(_STATE, s)
    _job = None
    os.remove(_BIN)
    _save(s, term.info)
    return False


def _entry(j, i):
    """Entry i of the bundle's file list, read from ota.bin into the job's 68-byte buffer (the list
    is ~2 KB: a heap in pieces may have no such block)."""
    e = j[7]
    with open(_BIN, "rb") as f:
        f.seek(_HEADER + _HEAD + i * _ENTRY)
        f.readinto(e)
    return e


def _open(st):
    rel, folder, i = st
    with open(_BIN, "rb") as f:
        f.seek(_HEADER + 56)
        count = int.from_bytes(f.read(2), "little")
    j = [rel, folder, i, 0, 0, count, bytearray(_BUF), bytearray(_ENTRY)]
    src = _HEADER + _HEAD + count * _ENTRY
    for k in range(i):  # where file i starts: after the files done
        src += int.from_bytes(_entry(j, k)[32:36], "little")
    j[4] = src
    return j


def _empty(folder):
    """Remove every file of the folder not running: a set is written whole."""
    for name in ("firmware", "card_schema"):
        d = "/%s/%s" % (folder, name)
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            os.remove(d + "/" + n)
