# A serial-sync terminal for tests, run on the MicroPython VM: firmware.serialsync.Responder over a tiny
# in-memory journal of valid, MAC-chained taprecords.
#
#   micropython fake_terminal_mp.py KEYHEX TERMINAL_ID N_RECORDS CLOCK_OFFSET [REQUEST_FILE]
#
# $TAPKIT_CONFIG_KEY (hex) enables INSTALL (blobs land in the current directory); $TAPKIT_EXTRA=1 adds
# an `extra` handler answering request 0x30 with its body reversed (the extension hook).
#
# Without REQUEST_FILE it serves stdin line by line (stdout = the port). Lines starting with "!" are test
# controls, never sent by a host: "!add N" journals N more taps, "!ack N" acknowledges as another host
# would, "!reclaim N" forgets the records up to N (their sector erased), "!state" prints the journal
# state as JSON. With REQUEST_FILE each line of the file goes to
# Responder.handle_line (as firmware.app hands it the lines hal.Console assembles; overlong lines are
# passed on too, the responder must drop them itself), then "#state ..." is printed.
import gc
import json
import sys
import time

from card_schema import taprecord
from firmware.serialsync import Responder

T0 = 1700000000


class FakeJournal:
    def __init__(self, key, terminal, capacity=200):
        self.key = key
        self.terminal = terminal
        self.capacity = capacity
        self.recs = []
        self.mac = taprecord.GENESIS_MAC
        self.acked_seq = 0
        self.tail = 1  # the oldest seq still "on flash" (!reclaim N erases up to N)
        self.counters = {}
        self.acks = []

    @property
    def head_seq(self):
        return len(self.recs)

    @property
    def unsynced(self):
        return self.head_seq - self.acked_seq

    def add(self, n):
        for _ in range(n):
            seq = len(self.recs) + 1
            card = seq % 4
            uid = bytes([4, card, 0x22, 0x33, 0x44, 0x55, 0x66])
            c = self.counters.get(card, 0)
            kind = taprecord.KIND_CHARGE
            result = 0
            if seq % 7 == 0:
                kind, result = taprecord.KIND_REFUSED, taprecord.RESULT_INSUFFICIENT
            elif seq % 11 == 0:
                kind, result = (
                    taprecord.KIND_DENIED,
                    2,
                )  # taprecord_host.RESULT_DENYLIST: a terminal loads no _host module
            else:
                c += 1
                self.counters[card] = c
            buf = bytearray(taprecord.SIZE)
            self.mac = taprecord.pack_into(
                buf,
                self.mac,
                self.key,
                seq=seq,
                time=T0 + seq * 60,
                terminal=self.terminal,
                uid=uid,
                kind=kind,
                result=result,
                zone=1,
                counter=c,
                amount=250 if kind == taprecord.KIND_CHARGE else 0,
                balance=10000 - 250 * c,
                line=12,
                stop=seq % 9,
            )
            self.recs.append(bytes(buf))
            # collect as we go: the records stay in RAM here (a terminal keeps them in flash),
            # and a heap full of garbage between them fragments until a list can't grow
            gc.collect()

    def read(self, from_seq, buf):
        n = 0
        from_seq = max(from_seq, self.tail)
        for i in range(max(0, from_seq - 1), min(len(self.recs), from_seq - 1 + len(buf) // 64)):
            buf[n * 64 : n * 64 + 64] = self.recs[i]
            n += 1
        return n

    def ack(self, upto):
        self.acks.append(upto)
        self.acked_seq = upto


class Clock:
    ok = 1

    def __init__(self, offset):
        self.offset = offset

    def time(self):
        return int(time.time()) + self.offset

    def set(self, unix):
        self.offset = unix - int(time.time())


def main():
    key = bytes.fromhex(sys.argv[1]) if hasattr(bytes, "fromhex") else None
    if key is None:
        import binascii

        key = binascii.unhexlify(sys.argv[1])
    terminal = int(sys.argv[2])
    j = FakeJournal(key, terminal)
    j.add(int(sys.argv[3]))
    clock = Clock(int(sys.argv[4]))
    out = sys.stdout.buffer
    info = {"terminal_id": terminal, "fw": "0.1.0-test", "config_ver": 3, "profile": "bus"}
    import os

    ck = os.getenv("TAPKIT_CONFIG_KEY")
    if ck:
        import binascii

        ck = binascii.unhexlify(ck)

    def extra(ftype, body):
        if ftype == 0x30:
            return 0xB0, bytes(reversed(bytes(body)))
        if ftype == 0x31:
            raise ValueError("extra handler failed")
        return None

    r = Responder(
        j,
        info,
        clock,
        out.write,
        log=lambda: ["boot ok", "pn532 ok"],
        extra=extra if os.getenv("TAPKIT_EXTRA") else None,
        config_key=ck or None,
    )
    if os.getenv("TAPKIT_NONCE"):  # a fixed nonce: the tests' controls are tagged in advance
        import binascii

        r.auth[0] = binascii.unhexlify(os.getenv("TAPKIT_NONCE"))
    if len(sys.argv) > 5:
        with open(sys.argv[5], "rb") as f:
            data = f.read()
        for line in data.split(b"\n"):
            if line:
                r.handle_line(line)
        print(
            "#state "
            + json.dumps(
                {
                    "acked": j.acked_seq,
                    "acks": j.acks,
                    "clock": clock.time(),
                    "dropped": r.dropped,
                    "requests": r.requests,
                    "refused": r.auth[3],
                }
            )
        )
        return
    inp = sys.stdin.buffer
    while True:
        line = inp.readline()
        if not line:
            break
        if line[:1] == b"!":
            cmd = line[1:].split()
            if cmd[0] == b"add":
                j.add(int(cmd[1]))
            elif cmd[0] == b"ack":  # acknowledged to another host (Wi-Fi sync elsewhere)
                j.ack(int(cmd[1]))
            elif cmd[0] == b"reclaim":  # the sectors up to that acked seq were erased
                j.tail = int(cmd[1]) + 1
            print(
                "#state "
                + json.dumps(
                    {
                        "head": j.head_seq,
                        "acked": j.acked_seq,
                        "acks": j.acks,
                        "clock": clock.time(),
                    }
                )
            )
            continue
        r.handle_line(line)


main()
