"""The journal (firmware/journal.py) driven command by command on the MicroPython VM, one JSON line
per command (tests/firmware/test_journal.py). Needs emulator/ (norflash) on MICROPYPATH.
"""

import sys
import json
import gc
from norflash import NORFlash, PowerCut
from firmware.journal import Journal, JournalFull, JournalError
from card_schema import taprecord, taprecord_host

KEY = bytes(range(16))
UID = b"\x04\x11\x22\x33\x44\x55\x66"


def stats(f):
    return {"programs": f.programs, "bytes_programmed": f.bytes_programmed, "erases": f.erases}


class FlakyFlash(NORFlash):
    # the next `fail` programs raise EIO and change nothing (a flash fault, not a power cut)
    fail = 0

    def program(self, addr, data):
        if self.fail:
            self.fail -= 1
            raise OSError(5)
        return NORFlash.program(self, addr, data)


def open_j(path, sectors):
    return Journal(FlakyFlash(path, sectors * 4096), KEY, 7)


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


def state(j):
    # in batches of 16, as the sync responder reads them: the whole journal never sits in the heap
    seqs, amounts, brk, prev = [], [], 0, None
    nxt = 1
    while True:
        recs = j.records(nxt, 16)
        if not recs:
            break
        for r in recs:
            seqs.append(taprecord.seq_of(r))
            amounts.append(taprecord_host.unpack(r)[taprecord_host.F_AMOUNT])
            if prev is not None and not brk and not taprecord.mac_ok(r, prev, KEY):
                brk = seqs[-1]
            prev = bytes(r[52:60])
        nxt = seqs[-1] + 1
    usage = {
        "head_seq": j.head_seq,
        "acked_seq": j.acked_seq,
        "tail_seq": j.tail_seq,
        "unsynced": j.unsynced,
        "full": j.full,
        "dead_slots": j.dead_slots,
    }
    return {"usage": usage, "seqs": seqs, "amounts": amounts, "chain_break": brk}


class LCG:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0x7FFFFFFF

    def next(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 8) % n


def copy(src, dst):
    buf = bytearray(4096)
    with open(src, "rb") as f, open(dst, "wb") as g:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            g.write(buf[:n])


def workload(j, rng, n_ops, returned, acks):
    # appends (80%) and acks (20%) from a seeded stream; records what returned
    for _ in range(n_ops):
        if rng.next(5) == 0 and j.head_seq > j.acked_seq:
            upto = j.acked_seq + 1 + rng.next(j.head_seq - j.acked_seq)
            j.ack(upto)
            acks.append(j.acked_durable)  # an ack on a full ring may stay in RAM (journal doc)
        else:
            amount = 1 + rng.next(50000)
            try:
                seq = tap(j, amount)
            except JournalFull:
                j.ack(j.head_seq)
                acks.append(j.acked_durable)
                continue
            returned[seq] = amount


def check(path, sectors, returned, acks, tag):
    j = open_j(path, sectors)
    st = state(j)
    seqs = st["seqs"]
    amounts = dict(zip(seqs, st["amounts"]))
    if acks and j.acked_seq < acks[-1]:
        return "%s acked_seq %d < last returned ack %d" % (tag, j.acked_seq, acks[-1])
    if returned and j.head_seq < max(returned):
        return "%s head %d < returned %d" % (tag, j.head_seq, max(returned))
    if seqs and seqs != list(range(seqs[0], seqs[-1] + 1)):
        return "%s seqs not contiguous/increasing: %r" % (tag, seqs)
    if seqs and (seqs[-1] != j.head_seq or seqs[0] > j.acked_seq + 1):
        return "%s records %d..%d vs acked %d head %d" % (
            tag,
            seqs[0],
            seqs[-1],
            j.acked_seq,
            j.head_seq,
        )
    for s in returned:
        if s > j.acked_seq and amounts.get(s) != returned[s]:
            return "%s returned seq %d (amount %d) missing or changed: %r" % (
                tag,
                s,
                returned[s],
                amounts.get(s),
            )
    if st["chain_break"]:
        return "%s MAC chain broken at %d" % (tag, st["chain_break"])
    # the journal goes on after the reboot: new seqs, chain continues
    h = j.head_seq
    try:
        a = tap(j, 777)
        b = tap(j, 778)
    except JournalFull:
        j.ack(j.head_seq)
        a = tap(j, 777)
        b = tap(j, 778)
    j.flash.close()
    if (a, b) != (h + 1, h + 2):
        return "%s after reboot appended %d,%d, head was %d" % (tag, a, b, h)
    j = open_j(path, sectors)
    st = state(j)
    j.flash.close()
    if st["chain_break"] or st["seqs"][-2:] != [a, b] or j.head_seq != b:
        return "%s second reboot: %r" % (tag, st)
    return None


def cutloop(base, work, sectors, seed, steps, n_ops):
    fails = 0
    for step in range(1, steps + 1):
        gc.collect()
        copy(base, work)
        j = open_j(work, sectors)
        j.flash.cut_after(step, seed * 1000 + step)
        returned = {}  # type: dict
        acks = []  # type: list
        cut = False
        try:
            workload(j, LCG(seed), n_ops, returned, acks)
        except PowerCut:
            cut = True
        j.flash.close()
        err = check(work, sectors, returned, acks, "seed=%d step=%d" % (seed, step))
        if err:
            print(json.dumps({"fail": err}))
            fails += 1
            if fails > 3:
                break
        if not cut:
            break  # the whole workload ran without reaching the cut: every op point covered
    print(json.dumps({"done": step, "fails": fails}))


def main(argv):
    cmd, path, sectors = argv[0], argv[1], int(argv[2])
    if cmd == "append":
        j = open_j(path, sectors)
        first = j.head_seq + 1
        for i in range(int(argv[3])):
            tap(j, first + i)
        print(json.dumps({"head": j.head_seq, "stats": stats(j.flash)}))
    elif cmd == "state":
        print(json.dumps(state(open_j(path, sectors))))
    elif cmd == "ack":
        j = open_j(path, sectors)
        print(json.dumps({"acked": j.ack(int(argv[3])), "stats": stats(j.flash)}))
    elif cmd == "fill":
        j = open_j(path, sectors)
        n = 0
        try:
            while True:
                tap(j, j.head_seq + 1)
                n += 1
        except JournalFull as e:
            print(
                json.dumps(
                    {
                        "appended": n,
                        "head": j.head_seq,
                        "full": j.full,
                        "error": str(e),
                        "capacity": j.capacity,
                    }
                )
            )
    elif cmd == "ops":
        # a little script: aN append N taps, kN ack up to N, r reboot, u print usage
        j = open_j(path, sectors)
        for op in argv[3:]:
            if op[0] == "a":
                for _ in range(int(op[1:])):
                    try:
                        tap(j, j.head_seq + 1)
                    except JournalFull as e:
                        print(json.dumps({"full": str(e), "head": j.head_seq}))
                        break
            elif op[0] == "k":
                try:
                    print(json.dumps({"ack": j.ack(int(op[1:])), "durable": j.acked_durable}))
                except JournalError as e:
                    print(json.dumps({"ack_error": str(e)}))
            elif op[0] == "f":
                j.flash.fail = int(op[1:])
                try:
                    tap(j, j.head_seq + 1)
                except JournalError as e:
                    print(json.dumps({"error": str(e)}))
            elif op == "r":
                j.flash.close()
                j = open_j(path, sectors)
            elif op == "u":
                print(
                    json.dumps(
                        {
                            "head": j.head_seq,
                            "acked": j.acked_seq,
                            "room": j.room,
                            "fill": j.fill,
                            "high_water": j.high_water,
                            "full": j.full,
                            "unsynced": j.unsynced,
                        }
                    )
                )
        print(json.dumps({"state": state(j)}))
    elif cmd == "cutloop":
        base = argv[3]
        j = open_j(base, sectors)
        workload(j, LCG(99), int(argv[6]), {}, [])  # history: the ring has wrapped before
        j.flash.close()
        cutloop(base, path, sectors, int(argv[4]), int(argv[5]), int(argv[7]))


main(sys.argv[1:])
