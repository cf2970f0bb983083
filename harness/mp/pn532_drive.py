"""The firmware's PN532 driver over SocketUART against the emulated chip; prints one JSON line per step
(tests/firmware/test_pn532_mp.py).

    micropython pn532_drive.py PORT MODE
"""

import sys
import json
import micropython
from firmware.pn532 import PN532, ReaderError, CardGone
from firmware.uart_socket import SocketUART

port = int(sys.argv[1])
mode = sys.argv[2]
uart = SocketUART("127.0.0.1", port, timeout_ms=50)
chip = PN532(uart, timeout_ms=500)


def out(**kw):
    print(json.dumps(kw))


def hexs(b):
    return "".join("%02x" % x for x in b)


def heap_free_exchange(apdu, n):
    # the hot path: after one warm-up call, exchange(copy=False) must allocate nothing
    chip.exchange(apdu, copy=False)
    micropython.heap_lock()
    try:
        for _ in range(n):
            chip.exchange(apdu, copy=False)
        ok = True
    except MemoryError:
        ok = False
    micropython.heap_unlock()
    return ok


if mode == "basic":
    chip.wakeup()
    out(step="fw", v=list(chip.firmware_version()))
    out(step="selftest", ok=chip.self_test())
    out(step="list", uid=chip.list_target(100))
elif mode == "card":
    chip.wakeup()
    uid = chip.list_target(200)
    out(step="list", uid=hexs(uid))
    out(step="getversion", r=hexs(chip.exchange(b"\x90\x60\x00\x00\x00")))
    out(step="echo", r=hexs(chip.exchange(bytes(range(1, 41)))))
    out(step="heapfree", ok=heap_free_exchange(b"\x90\x6c\x00\x00\x01\x02\x00", 5))
    chip.release()
    try:
        chip.exchange(b"\x90\x60\x00\x00\x00")
        out(step="after_release", err=None)
    except CardGone as e:
        out(step="after_release", err="CardGone", code=e.args[1])
elif mode == "gone":
    chip.wakeup()
    chip.list_target(200)
    out(step="first", r=hexs(chip.exchange(b"\x90\x5a\x00\x00\x03\x01\x4b\x54\x00")))
    try:
        chip.exchange(b"\x90\x6c\x00\x00\x01\x02\x00")
        out(step="second", err=None)
    except CardGone as e:
        out(step="second", err="CardGone", code=e.args[1], reader=isinstance(e, ReaderError))
    out(step="list_again", uid=chip.list_target(100))
elif mode == "noisy":
    chip.wakeup()
    ok = 0
    for i in range(20):
        uid = chip.list_target(200)
        r = chip.exchange(bytes([0x90, 0x6C, 0, 0, 1, i, 0]))
        if uid is not None and bytes(r) == bytes([0x00, i, 1, 0, 0, 0x6C, 0x90, 0x91, 0x00]):
            ok += 1
    out(step="noisy", ok=ok)
elif mode == "reconnect":
    chip.wakeup()
    out(step="fw1", v=list(chip.firmware_version()))
    sys.stdin.readline()  # the test drops the connection, then lets us go on
    out(step="fw2", v=list(chip.firmware_version()), reconnects=uart.reconnects)
