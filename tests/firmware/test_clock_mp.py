"""The clock after a power cut: firmware/clock.py (the DS3231 driver) and hal.Clock on the MicroPython
VM, against the emulated chip (emulator/ds3231.py, the same file the virtual board deploys), and the
chip model itself against CPython's calendar."""

import calendar
import json
import os
import time

import pytest
from harness import vm

from emulator import ds3231

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMU = os.path.join(ROOT, "emulator")


@pytest.mark.parametrize(
    "when",
    [
        (2000, 1, 1, 0, 0, 0),
        (2024, 2, 29, 23, 59, 59),
        (2026, 12, 1, 18, 30, 5),
        (2099, 12, 31, 12, 0, 0),
        (2100, 3, 1, 1, 2, 3),
    ],
)
def test_chip_registers_are_bcd_of_the_calendar(tmp_path, when):
    unix = calendar.timegm(when + (0, 0, 0))
    path = str(tmp_path / "ds3231.json")
    ds3231.set_unix(unix, path)
    r = ds3231.I2C(path=path).readfrom_mem(ds3231.ADDR, 0, 7)
    y, mo, d, h, mi, s = when
    want = [s, mi, h, None, d, mo, y % 100]
    got = [(b >> 4) * 10 + (b & 15) for b in r]
    assert got[:3] == want[:3] and got[4] == d and got[6] == want[6]
    assert ((r[5] & 0x1F) >> 4) * 10 + (r[5] & 15) == mo
    assert bool(r[5] & 0x80) == (y >= 2100)  # the century bit
    assert r[3] == time.gmtime(unix).tm_wday + 1  # 1 Monday .. 7 Sunday
    assert ds3231.unix_of(path) in ((unix, False), (unix + 1, False))


def test_chip_powers_up_with_osf_and_keeps_time_on_battery(tmp_path):
    path = str(tmp_path / "ds3231.json")
    bus = ds3231.I2C(path=path)
    assert bus.readfrom_mem(0x68, 0x0F, 1)[0] & 0x80  # first power-up: OSF
    assert bus.readfrom_mem(0x68, 0x0E, 1) == b"\x1c"
    with pytest.raises(OSError):
        bus.readfrom_mem(0x57, 0, 1)  # nobody at that address
    bus.writeto_mem(0x68, 0x0F, b"\x80")  # writing 1 does not clear OSF
    assert bus.readfrom_mem(0x68, 0x0F, 1)[0] & 0x80
    ds3231.set_unix(1_800_000_000, path)
    ds3231.power_cut(path)  # battery fitted: it keeps counting
    t, osf = ds3231.unix_of(path)
    assert not osf and 1_800_000_000 <= t <= 1_800_000_002
    ds3231.power_cut(path, battery=0)  # battery flat: back to 2000-01-01 with OSF
    t, osf = ds3231.unix_of(path)
    assert osf and t < 946_684_810
    # 12-hour mode written by someone else: 11 PM reads as 23 h
    bus.writeto_mem(0x68, 0, bytes([0x00, 0x00, 0x40 | 0x20 | 0x11, 1, 0x01, 0x01, 0x26]))
    assert ds3231.unix_of(path)[0] - calendar.timegm((2026, 1, 1, 23, 0, 0)) in (0, 1)


_DRIVER = """
import sys, json
sys.path.insert(0, sys.argv[1])
import ds3231
from firmware import clock
bus = ds3231.I2C(0, scl=ds3231.Pin(22), sda=ds3231.Pin(21))
out = {"fresh": clock.read(bus, 0x68)}
for t in (946684800, 1709251199, 1764613805, 4102444799, 4107542400):
    clock.write(bus, 0x68, t)
    out[str(t)] = clock.read(bus, 0x68)
print(json.dumps(out))
"""


def test_driver_reads_and_writes_the_emulated_chip_on_the_vm(mp_run, tmp_path):
    p = mp_run(
        _DRIVER,
        EMU,
        env={"TAPKIT_DS3231": str(tmp_path / "c.json")},
        cwd=str(tmp_path),
        check=True,
    )
    out = vm.json_lines(p)[-1]
    assert out.pop("fresh") is None  # OSF set at power-up: no valid time
    for t, got in out.items():
        assert got - int(t) in (0, 1), (t, got)
    assert not ds3231.unix_of(str(tmp_path / "c.json"))[1]  # write() cleared OSF


_CLOCK = """
import sys, json
from firmware import hal
lost = sys.argv[1] == "1"
rtc = sys.argv[2] == "1"
c = hal.Clock("clock.json", 0 if lost else 1)
if rtc:
    from firmware import clock
    c = clock.Clock(c, {"file": "clock.json", "bus": "ds3231", "addr": 104}, lost)
out = {"time": c.time(), "unset": 1 - c.ok}
if len(sys.argv) > 3:
    c.set(int(sys.argv[3]))
    out["after_set"] = [c.time(), 1 - c.ok]
print(json.dumps(out))
"""


def _clock(mp_run, tmp_path, lost, rtc=False, set_to=None):
    args = ["1" if lost else "0", "1" if rtc else "0"] + ([set_to] if set_to else [])
    env = {"TAPKIT_DS3231": str(tmp_path / "ds3231.json")}
    p = mp_run(_CLOCK, *args, path=[EMU], env=env, cwd=str(tmp_path), check=True)
    return vm.json_lines(p)[-1]


def test_clock_after_a_power_cut_without_rtc_is_unset_until_set(mp_run, tmp_path):
    now = int(time.time())
    set_at = now - 86400  # set a day ago, then the power went
    (tmp_path / "clock.json").write_text(json.dumps({"offset": 0, "floor": set_at}))
    out = _clock(mp_run, tmp_path, lost=True)
    assert out["unset"] == 1
    assert set_at <= out["time"] <= set_at + 5  # runs on from the last time set, not the true time
    # a soft or watchdog reset before any sync: still unset (kept in the file)
    assert _clock(mp_run, tmp_path, lost=False)["unset"] == 1
    out = _clock(mp_run, tmp_path, lost=False, set_to=str(now))
    assert out["after_set"][1] == 0 and abs(out["after_set"][0] - now) <= 2
    assert _clock(mp_run, tmp_path, lost=False)["unset"] == 0
    assert json.loads((tmp_path / "clock.json").read_text())["ok"] == 1


def test_clock_after_a_power_cut_with_a_ds3231_takes_its_time(mp_run, tmp_path):
    now = int(time.time())
    ds3231.set_unix(now, str(tmp_path / "ds3231.json"))
    (tmp_path / "clock.json").write_text(json.dumps({"offset": 0, "floor": now - 86400}))
    out = _clock(mp_run, tmp_path, lost=True, rtc=True)
    assert out["unset"] == 0 and abs(out["time"] - now) <= 2
    # the chip's battery was flat too: OSF set, so the clock stays unset
    ds3231.power_cut(str(tmp_path / "ds3231.json"), battery=0)
    out = _clock(mp_run, tmp_path, lost=True, rtc=True)
    assert out["unset"] == 1
    # a sync sets the clock and the chip (OSF cleared): the next power cut keeps the time
    out = _clock(mp_run, tmp_path, lost=False, rtc=True, set_to=str(now + 100))
    assert out["after_set"][1] == 0
    t, osf = ds3231.unix_of(str(tmp_path / "ds3231.json"))
    assert not osf and now + 100 <= t <= now + 103


_ESP32 = """
import json
from firmware import hal
b = hal.load("board.json")
print(json.dumps({"reset": b.reset_cause, "errors": b.errors, "time": b.clock.time(),
                  "unset": 1 - b.clock.ok}))
"""


def test_esp32_board_reads_its_ds3231_through_machine_i2c_after_a_power_on(mp_run, tmp_path):
    """hal_esp32 with tests/fakes: a power-on reset loses the RTC timer; board.json "clock" with
    "bus": "machine" reads the DS3231 over machine.I2C; a soft reset leaves the clock as it was."""
    board = json.load(open(os.path.join(ROOT, "boards", "esp32-devkitc", "board.json")))
    board["clock"].update(bus="machine", chip="ds3231", id=0, sda=21, scl=22, addr=104)
    (tmp_path / "board.json").write_text(json.dumps(board))
    chip = str(tmp_path / "ds3231.json")
    env = {
        "TAPKIT_FAKE_PARTITIONS": os.path.join(ROOT, "boards", "esp32-devkitc", "partitions.csv"),
        "TAPKIT_FAKE_FLASH_DIR": str(tmp_path),
        "TAPKIT_DS3231": chip,
    }
    fakes = os.path.join(ROOT, "tests", "fakes")

    def boot(cause=1):
        e = dict(env, TAPKIT_FAKE_RESET_CAUSE=str(cause))
        p = mp_run(_ESP32, path=[fakes, EMU], env=e, cwd=str(tmp_path), check=True)
        return vm.json_lines(p)[-1]

    out = boot()  # a new chip (OSF): nothing to take, the clock is unset
    assert out["reset"] == "power-on" and out["unset"] == 1
    assert not [e for e in out["errors"] if e.startswith("clock")]  # (no reader wired here)
    ds3231.set_unix(1_900_000_000, chip)
    out = boot()
    assert out["unset"] == 0 and 1_900_000_000 <= out["time"] <= 1_900_000_003
    ds3231.set_unix(
        1_700_000_000, chip
    )  # a soft reset does not read the chip: the RTC timer ran on
    out = boot(cause=5)
    assert out["reset"] == "soft" and out["unset"] == 0 and out["time"] >= 1_900_000_000
