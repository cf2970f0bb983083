"""The deny-list campaign (issue 14): a denied card is never charged, and no tap is checked against a
partial list or against none while a list is installed, whatever happens during an install.

    python -m harness.deny_campaign --runs 20 --cards 5000 --seed 1      # JSON summary at the end
    summary = run_campaign(workdir, ks, runs=3, cards=2000, seed=7)        # tests

Each run boots a virtual terminal (the real firmware on the unix port, its littlefs vfs the size of a
DevKitC's), then over USB:
1. installs an old full list (card A and X on it) and taps A (refused) and B (charged);
2. installs a new full list of `cards` cards (B its first entry, M its middle one, L its last, X and R
   somewhere, A no more), with a power cut at a seeded moment in a seeded fraction of runs: during the
   transfer, or after its last chunk (while the terminal verifies, renames and reloads). After a cut
   the board boots again and A and B are tapped: the tap must be judged by the old complete list
   (A refused, B charged) or the new one (A charged, B refused), never by none (both charged) nor
   a mixture; X (on both) is always refused. The install then resumes and must end with the new
   version;
3. taps B, M, L, X, R (refused) and A, U (U: M's neighbour, never listed; charged) right after the
   install, the sync responder still loaded, and M, L, A again once the responder is forgotten;
4. installs a delta list (adds D, removes R), with a cut in some runs as in 2: after the cut D is
   refused and R charged only if the delta is in use, M always refused; after the install D is
   refused, R charged.
A case is one tap with its expected outcome. Every failure is kept with the run's seed.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

from card_schema import frames, frames_host, signed, tariff
from emulator.vboard import VirtualBoard
from harness.boards import deploy
from host_tools import keystore
from host_tools.fleet.link import LinkError, SerialLink, TerminalError

FARE = 2500
_UID = {  # 7-byte NXP UIDs placed where the list puts them
    "B": 0x04_00_00_00_00_00_10,  # below every filler: the new list's first entry
    "L": 0x04_FF_FF_FF_FF_FF_F0,  # above every filler: its last entry
    "M": 0x04_80_00_00_00_00_00,  # as many fillers below as above: its middle entry
    "U": 0x04_80_00_00_00_00_01,  # M's neighbour, never listed
    "A": 0x04_60_00_00_00_00_00,  # old list only
    "X": 0x04_40_00_00_00_00_00,  # old and new
    "R": 0x04_C0_00_00_00_00_00,  # new list, removed by the delta
    "D": 0x04_20_00_00_00_00_00,  # added by the delta
}
_LO, _HI = 0x04_00_00_00_00_01_00, 0x04_FF_FF_FF_FF_F0_00


def uid(name):
    return _UID[name].to_bytes(7, "big")


def city_list(rng, n, listed):
    """{uid: action} of n entries: fillers half below M and half above, plus `listed` cards."""
    taken = set(_UID.values())
    mid = _UID["M"]
    out = {}
    half = (n - len(listed)) // 2
    for lo, hi, k in ((_LO, mid, half), (mid + 2, _HI, n - len(listed) - half)):
        got = 0
        while got < k:
            u = rng.randrange(lo, hi)
            if u not in taken:
                taken.add(u)
                out[u.to_bytes(7, "big")] = rng.randrange(2) and tariff.ACTION_BLOCK
                got += 1
    for name in listed:
        out[uid(name)] = tariff.ACTION_REFUSE
    return out


def _payload_blob(ks, tid, version, entries, delta=False):
    from card_schema import signed_host

    kind = signed.KIND_DENY_DELTA if delta else signed.KIND_DENY
    return signed_host.seal_fast(
        keystore.config_key(ks, tid), kind, version, tariff.pack_deny(entries)
    )


def make_cards(folder, ks, balance=10_000_000):
    from host_tools.sim.virtual import new_emulated_card

    os.makedirs(folder, exist_ok=True)
    paths = {}
    for i, name in enumerate(sorted(_UID)):
        p = os.path.join(folder, name + ".card")
        new_emulated_card(p, ks, card_no=100 + i, balance=balance, uid=uid(name))
        paths[name] = p
    return paths


class Run:
    def __init__(self, vb, ks, tid, cards, rng, log):
        self.vb, self.ks, self.tid, self.cards, self.rng, self.log = vb, ks, tid, cards, rng, log
        self.cases = 0
        self.retried = 0
        self.failures = []
        self.link = None

    def open(self):
        if self.link is not None:
            self.link.close()
        self.link = SerialLink(self.vb.port, timeout=20.0, retries=2)
        self.link.key = keystore.terminal_key(self.ks, self.tid)
        return self.link.identify()

    def tap(self, name):
        """(refused by the deny list, what it showed); a tap that ends neither charged nor denied
        (a read the loaded machine cut short: "Card removed", "Please tap again") is tapped again,
        as a rider does, and counted in `retried`."""
        for _ in range(4):
            shown = self.vb.tap(self.cards[name], timeout=60.0)
            if shown["buzzer"] == "ok":
                return False, shown
            if "not allowed" in shown["display"] or "blocked" in shown["display"]:
                return True, shown
            self.retried += 1
        raise AssertionError("card %s: neither charged nor denied in 4 taps: %s" % (name, shown))

    def expect(self, step, name, refused):
        got, shown = self.tap(name)
        self.cases += 1
        if got != refused:
            self.fail(step, "%s %s: %s" % (name, "charged" if refused else "refused", shown))
        return got

    def fail(self, step, what):
        tail = [ln for ln in self.vb.lines()[-40:] if not ln.startswith(("STAT|", "KEY|"))]
        self.failures.append({"step": step, "what": what, "board": tail[-20:]})
        self.log("FAIL %s: %s" % (step, what))

    def racing(self, step, name):
        """Tap card `name` (on the old and the new list) again and again while an install runs,
        until the returned function is called: every tap must be refused."""
        stop = threading.Event()

        def work():
            while not stop.is_set():
                got, shown = self.tap(name)
                self.cases += 1
                if not got:
                    self.fail(step, "%s charged during the install: %s" % (name, shown))

        t = threading.Thread(target=work, daemon=True)
        t.start()

        def done():
            stop.set()
            t.join(120)

        return done

    def install(self, blob, cut=None, race=None):
        """INSTALL `blob`; cut = None or (chunk index, delay s): the power is cut `delay` seconds
        after that chunk's request went out (index = the last chunk: during the terminal's
        verify, rename and reload). race: a card tapped throughout (racing). Returns True when
        the install completed without a cut."""
        if cut is None:
            done = self.racing("racing " + race, race) if race else None
            try:
                self.link.install(blob)
            finally:
                if done:
                    done()
            return True
        nth = cut[0] + 1  # the resume query is the first INSTALL request
        sent = [0]
        hit = threading.Event()

        def trace(way, line):
            if way == ">" and frames_host.decode(line)[0] == frames.INSTALL:
                sent[0] += 1
                if sent[0] == nth:
                    hit.set()

        self.link.trace = trace
        err = []

        def work():
            try:
                self.link.install(blob)
            except (LinkError, TerminalError, OSError, ValueError) as e:
                err.append(e)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        if not hit.wait(600):
            t.join()
            return True
        time.sleep(cut[1])
        self.vb.restart("power cut during an install", wait_ready=120.0)
        t.join(120)
        self.link.trace = None
        return False


def one_run(workdir, ks, seed, cards, paths, cut_rate=0.5, log=print, tid=1001, files=None):
    """One run (module doc); `files`: {path: bytes} written into the terminal's filesystem after
    it is deployed (a test's broken firmware module, to show the campaign fails on it)."""
    rng = random.Random(seed)
    state = deploy(os.path.join(workdir, "t%d" % seed), ks, tid, fare=FARE, sync_idle_ms=3000)
    if files:
        from emulator import lfsimage

        lfsimage.write_files(os.path.join(state, "fs.img"), files)
    chunks = lambda b: -(-len(b) // frames_host.INSTALL_CHUNK)  # noqa: E731
    old = _payload_blob(ks, tid, 2, city_list(rng, 200, ["A", "X"]))
    new = _payload_blob(ks, tid, 3, city_list(rng, cards, ["B", "M", "L", "X", "R"]))
    delta = _payload_blob(
        ks, tid, 4, {uid("D"): tariff.ACTION_REFUSE, uid("R"): tariff.ACTION_REMOVE}, delta=True
    )

    def pick_cut(blob):
        if rng.random() >= cut_rate:
            return None
        n = chunks(blob)
        if rng.random() < 0.5:  # after the last chunk: verify, rename, reload
            return (n - 1, rng.uniform(0.0, 3.0 if n < 100 else 12.0))
        return (rng.randrange(n), rng.uniform(0.0, 0.3))

    t0 = time.monotonic()
    out = {"seed": seed, "cards": cards, "cuts": 0, "outcomes": []}
    out["baud"] = rng.choice((0, 0, 115200))
    with VirtualBoard(state, baud=out["baud"]) as vb:
        r = Run(vb, ks, tid, paths, rng, log)
        r.open()
        r.install(old)
        r.expect("old", "A", True)
        r.expect("old", "B", False)

        cut = out["cut"] = pick_cut(new)
        t1 = time.monotonic()
        if not r.install(new, cut, race="X" if rng.random() < 0.5 else None):
            out["cuts"] += 1
            r.open()
            r.expect("new-cut", "X", True)
            a, sa = r.tap("A")
            b, sb = r.tap("B")
            r.cases += 2
            if a and not b:
                out["outcomes"].append("old")
            elif b and not a:
                out["outcomes"].append("new")
            else:
                r.fail("new-cut %s" % (cut,), "A %s, B %s" % (sa, sb))
            if r.open()["deny_ver"] != 3:  # the cut came before the rename: resumed
                r.install(new)
        out["install_s"] = round(time.monotonic() - t1, 1)
        r.expect("new at once", "B", True)  # the first tap after the install's last answer
        if r.open()["deny_ver"] != 3:
            r.fail("new", "deny_ver %s" % r.link.identify()["deny_ver"])
        for name in ("B", "M", "L", "X", "R"):
            r.expect("new responder", name, True)
        for name in ("A", "U"):
            r.expect("new responder", name, False)
        time.sleep(4.5)  # the responder forgotten (sync_idle_ms 3000)
        r.expect("new idle", "M", True)
        r.expect("new idle", "L", True)
        r.expect("new idle", "A", False)

        cut = pick_cut(delta)
        r.open()
        if not r.install(delta, cut, race="M" if rng.random() < 0.5 else None):
            out["cuts"] += 1
            r.open()
            r.expect("delta-cut", "M", True)
            d, sd = r.tap("D")
            rr, sr = r.tap("R")
            r.cases += 2
            if d and not rr:
                out["outcomes"].append("delta new")
            elif rr and not d:
                out["outcomes"].append("delta old")
            else:
                r.fail("delta-cut %s" % (cut,), "D %s, R %s" % (sd, sr))
            if r.open()["deny_delta_ver"] != 4:
                r.install(delta)
        r.expect("delta at once", "D", True)
        got = r.open()
        if (got["deny_ver"], got["deny_delta_ver"]) != (3, 4):
            r.fail("delta", "versions %s" % ((got["deny_ver"], got["deny_delta_ver"]),))
        r.expect("delta", "D", True)
        r.expect("delta", "R", False)
        r.expect("delta", "B", True)
        time.sleep(4.5)
        r.expect("delta idle", "D", True)
        r.expect("delta idle", "M", True)
        r.expect("delta idle", "R", False)
        r.link.close()
        errors = [ln for ln in vb.lines() if "MemoryError" in ln or "deny" in ln.lower()]
    out.update(cases=r.cases, failures=r.failures, seconds=round(time.monotonic() - t0, 1))
    out["retried"] = r.retried
    out["errors"] = errors[-5:]
    shutil.rmtree(state, ignore_errors=True)
    return out


def run_campaign(workdir, ks, runs, cards, seed, cut_rate=0.5, log=print):
    paths = make_cards(os.path.join(workdir, "cards"), ks)
    total = {"runs": 0, "cases": 0, "cuts": 0, "failures": [], "outcomes": {}, "install_s": []}
    for i in range(runs):
        s = seed * 1000 + i
        res = one_run(workdir, ks, s, cards, paths, cut_rate, log)
        keys = (
            "seed",
            "cases",
            "cuts",
            "outcomes",
            "seconds",
            "baud",
            "cut",
            "install_s",
            "retried",
        )
        log(json.dumps({k: res[k] for k in keys}))
        total["runs"] += 1
        total["cases"] += res["cases"]
        total["cuts"] += res["cuts"]
        total["retried"] = total.get("retried", 0) + res["retried"]
        total["install_s"].append(res["install_s"])
        for o in res["outcomes"]:
            total["outcomes"][o] = total["outcomes"].get(o, 0) + 1
        total["failures"] += [dict(f, seed=s) for f in res["failures"]]
        if res["failures"]:
            total.setdefault("errors", {})[s] = res["errors"]
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cards", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cut-rate", type=float, default=0.5)
    p.add_argument("--keystore", help="a keystore (default: a new one)")
    a = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="denycamp-")
    try:
        if a.keystore:
            ks = keystore.load(a.keystore)
        else:
            path = os.path.join(work, "keys.json")
            keystore.init(path)
            ks = keystore.load(path)
        total = run_campaign(work, ks, a.runs, a.cards, a.seed, a.cut_rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(total))
    return 1 if total["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
