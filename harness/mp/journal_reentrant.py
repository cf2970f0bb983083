"""The journal's littlefs-style reentrant power-cut run on the MicroPython VM (tests/firmware/
test_journal_reentrant.py runs a few seeds, `make bench` >= 10,000 cuts: bench/journal.py).

    micropython journal_reentrant.py DIR SEED_FROM SEED_TO MODE OPS

MODE: "linear" (cut after 1, 2, 3, ... writes since each boot, wrapping at 97) or "random" (a seeded
number of writes, 1..40). Prints one JSON line per seed, {"fail": ...} lines on a violated invariant
(with the seed and step that replay it) and a final {"total": ...}. Needs emulator/ (norflash) on
MICROPYPATH.
"""

import sys
import json
import gc
import os
from norflash import NORFlash, PowerCut
from firmware.journal import Journal, JournalFull
from card_schema import taprecord

KEY = bytes(range(16))
TID = 7
UID = b"\x04\x11\x22\x33\x44\x55\x66"


class LCG:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0x7FFFFFFF

    def next(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 8) % n


class Host:
    # What the host has: survives the terminal's power cuts. Stores records in seq order, checks
    # the MAC chain from genesis, acknowledges what it stored.
    def __init__(self):
        self.head = 0  # every record up to here is stored (and verified)
        self.mac = taprecord.GENESIS_MAC
        self.macs = {}  # seq -> mac of stored records the terminal may still hold
        self.ack_floor = 0  # the terminal must never forget an ack it made durable

    def sync(self, j, batches, pending):
        while batches:
            batches -= 1
            recs = j.records(self.head + 1, 11)
            if not recs:
                break
            for r in recs:
                seq = taprecord.seq_of(r)
                if seq != self.head + 1:
                    return "host expected seq %d, got %d" % (self.head + 1, seq)
                if not taprecord.crc_ok(r) or not taprecord.mac_ok(r, self.mac, KEY):
                    return "host: seq %d fails its CRC or MAC chain" % seq
                a = pending.pop(seq, None)
                if a is not None and amount_of(r) != a:
                    return "host: seq %d amount %d, OK was shown for %d" % (seq, amount_of(r), a)
                self.head = seq
                self.mac = bytes(r[52:60])
                self.macs[seq] = self.mac
            j.ack(self.head)  # durable first (stored above), then ACK
            self.ack_floor = max(self.ack_floor, j.acked_durable)
        return None


def amount_of(r):
    return r[28] | r[29] << 8 | r[30] << 16 | r[31] << 24  # the amount field (taprecord)


def tap(j, amount):
    return j.append_tap(
        time=1700000000 + amount,
        uid=UID,
        kind=taprecord.KIND_CHARGE,
        amount=amount,
        balance=100000 - amount,
        line=12,
        stop=3,
    )


def check(j, host, pending, last_ok):
    # the invariant after a reboot
    if j.head_seq < host.head or j.head_seq < last_ok:
        return "head %d below a seq already shown/stored (%d/%d): seqs would repeat" % (
            j.head_seq,
            last_ok,
            host.head,
        )
    if j.acked_seq < host.ack_floor or j.acked_seq > host.head:
        return "acked %d outside [durable ack %d, host head %d]" % (
            j.acked_seq,
            host.ack_floor,
            host.head,
        )
    if j.full != (j.room == 0):
        return "full %s but room %d" % (j.full, j.room)
    nxt = j.tail_seq
    if nxt > j.acked_seq + 1:
        return "tail %d beyond acked %d + 1: unsynced taps lost" % (nxt, j.acked_seq)
    prev = taprecord.GENESIS_MAC if nxt == 1 else host.macs.get(nxt - 1)
    while nxt <= j.head_seq:
        recs = j.records(nxt, 16)
        if not recs:
            return "records end at %d, head %d" % (nxt - 1, j.head_seq)
        for r in recs:
            seq = taprecord.seq_of(r)
            if seq != nxt:
                return "seq %d where %d was due (not strictly increasing/contiguous)" % (seq, nxt)
            if not taprecord.crc_ok(r) or r[0] != taprecord.VERSION:
                return "corrupt record returned at seq %d" % seq
            if prev is not None and not taprecord.mac_ok(r, prev, KEY):
                return "MAC chain broken at seq %d" % seq
            m = host.macs.get(seq)
            if m is not None and m != bytes(r[52:60]):
                return "seq %d changed after the host stored it" % seq
            a = pending.get(seq)
            if a is not None and amount_of(r) != a:
                return "seq %d amount %d, OK was shown for %d" % (seq, amount_of(r), a)
            prev = bytes(r[52:60])
            nxt = seq + 1
    for s in pending:
        if s < j.tail_seq or s > j.head_seq:
            return "tap seq %d (OK shown) is not in the journal" % s
    for s in [s for s in host.macs if s < j.tail_seq - 1]:
        del host.macs[s]  # the host keeps them; the chain check needs only the tail's predecessor
    return None


def run(path, seed, mode, n_ops):
    sectors = 2 + seed % 3
    sync_every = 4 + (seed * 7) % 150  # some seeds fill the ring, some sync all the time
    rng = LCG(seed)  # the tap stream
    crng = LCG(seed + 100003)  # the cut points
    try:
        os.remove(path)
    except OSError:
        pass
    host = Host()
    pending = {}  # type: dict  # seq -> amount: taps whose OK was shown, not yet stored by the host
    last_ok = 0
    ops = cuts = full = 0
    while True:
        gc.collect()
        chip = NORFlash(path, sectors * 4096)
        k = 1 + cuts % 97 if mode == "linear" else 1 + crng.next(40)
        chip.cut_after(k if ops < n_ops else 0, seed * 100000 + cuts)
        try:
            j = Journal(chip, KEY, TID)
            err = check(j, host, pending, last_ok)
            if err:
                chip.close()
                return {
                    "fail": "seed=%d step=%d (%s, %d ops done): %s" % (seed, cuts, mode, ops, err),
                    "seed": seed,
                    "step": cuts,
                }
            if ops >= n_ops:
                break
            while ops < n_ops:
                ops += 1
                op = rng.next(sync_every)
                if op == 0:
                    err = host.sync(j, 1 + rng.next(30), pending)
                    if err:
                        chip.close()
                        return {
                            "fail": "seed=%d step=%d (%s, %d ops done): %s"
                            % (seed, cuts, mode, ops, err),
                            "seed": seed,
                            "step": cuts,
                        }
                else:
                    amount = 1 + rng.next(50000)
                    try:
                        seq = tap(j, amount)
                    except JournalFull:
                        full += 1  # refused before any charge: nothing shown, nothing lost
                        continue
                    pending[seq] = amount  # the rider's OK
                    last_ok = seq
        except PowerCut:
            cuts += 1
        chip.close()
    chip.close()
    return {
        "seed": seed,
        "cuts": cuts,
        "ops": ops,
        "head": j.head_seq,
        "synced": host.head,
        "full_refusals": full,
        "sectors": sectors,
    }


def main(argv):
    d, s0, s1, mode, n_ops = argv[0], int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    cuts = fails = 0
    for seed in range(s0, s1):
        try:
            r = run(d + "/reentrant.bin", seed, mode, n_ops)
        except Exception as e:  # the journal raised where it must not (a boot that fails...)
            r = {"fail": "seed=%d (%s): %s: %s" % (seed, mode, type(e).__name__, e), "seed": seed}
        print(json.dumps(r))
        if "fail" in r:
            fails += 1
        else:
            cuts += r["cuts"]
    print(json.dumps({"total": cuts, "fails": fails}))


main(sys.argv[1:])
