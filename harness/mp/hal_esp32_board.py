"""The ESP32 board layer (firmware/hal_esp32.py) with the ESP32 modules faked (tests/fakes), one JSON
line per check (tests/firmware/test_hal_esp32.py).
"""

import sys
import json
from firmware import hal, journal
from card_schema import taprecord

board = hal.load(sys.argv[1])
out = {
    "name": board.name,
    "platform": board.platform,
    "errors": board.errors,
    "reset": board.reset_cause,
}
u = board.uart
out["uart"] = [u.id, u.baudrate, u.tx, u.rx, u.timeout]
u.write(b"\x00\x00\xff\x02\xfe\xd4\x02\x2a\x00")  # PN532 GetFirmwareVersion frame
got = bytearray(16)
n = u.readinto(got, 16)
out["uart_reply"] = bytes(got[:n]).hex() if n else None
out["flash"] = [board.flash.size, board.flash.SECTOR, board.flash.PAGE]
board.wdt.feed()
out["wdt"] = [board.wdt.timeout, board.wdt.feeds]
out["wifi"] = [
    board.net.connect("depot", "wrong"),
    board.net.connect("depot", "s3cret"),
    board.net.isconnected(),
]
board.display.show("Tap your card", "3,000 Rial")
board.buzzer.beep("ok")
board.led.set("green")
j = journal.Journal(board.flash, bytes(16), 7)
out["recovered_head"] = j.head_seq
for _i in range(int(sys.argv[2])):
    j.append_tap(time=1700000000, uid=b"\x04" * 7, kind=taprecord.KIND_CHARGE, amount=300)
out["head"] = j.head_seq
out["capacity"] = j.capacity
f = board.flash
out["flash_stats"] = {
    "programs": f.programs,
    "bytes_programmed": f.bytes_programmed,
    "erases": f.erases,
}
print(json.dumps(out))
