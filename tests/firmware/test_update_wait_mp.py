"""A firmware switch waits for a safe moment (firmware/app.py Terminal._update): among others, no
host on the USB serial. A tap forgets the sync responder of a host still talking (its heap is the
tap's), so "no host" is no console line for sync_idle_ms once a responder was forgotten, not only
"no responder loaded"; a boot that heard no host does not wait for it. On the MicroPython VM."""

from harness import vm

SCRIPT = """
import time
import firmware
import firmware.app as app

switched = []


class Ota:
    def switch(self, t):
        switched.append(t.name)


firmware.load = lambda name: Ota()


class T:
    pass


def case(name, requests, heard_ago, loaded=None):
    t = T()
    t.name = name
    t.taps = 7
    t.present_uid = t.pending = None
    t.responder = loaded
    t._wifi = False
    t.sync_requests = requests
    t._sync_idle = 20000
    now = time.ticks_ms()
    t._heard = time.ticks_add(now, -heard_ago)
    app._QUIET[0] = 7
    app._QUIET[1] = time.ticks_add(now, -4000)  # no tap for 4 s
    app.Terminal._update(t)


case("boot", 0, 0)
case("host talked 1 s ago, its responder forgotten by a tap", 5, 1000)
case("host quiet 25 s", 5, 25000)
case("responder loaded", 5, 25000, loaded=object())
print(switched)
"""


def test_a_switch_waits_for_a_host_whose_responder_a_tap_forgot(mpy_build):
    p = vm.run(mpy_build, SCRIPT, path=[vm.EMULATOR], check=True)
    assert p.stdout.strip() == "['boot', 'host quiet 25 s']"
