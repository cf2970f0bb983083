"""The sync responder is in the heap only while a host talks (firmware/app.py: loaded by the first
line, forgotten after config sync_idle_ms of silence). The USB controls' state is the terminal's,
not the responder's: a responder forgotten in between loses none of it. The nonce an IDENTIFY gave
still covers the next control, a control tagged over a nonce that a SET_CLOCK renewed is still
refused, and the untagged clock budget of the boot is not refilled."""

import struct
import time

import pytest

from card_schema import frames, frames_host
from emulator.vboard import VirtualBoard
from host_tools import keystore
from host_tools.fleet.link import SerialLink, TerminalError
from host_tools.sim.virtual import deploy_virtual

TID = 1501
IDLE_MS = 300  # the responder is forgotten this long after the last line
# a request is sent once: a loaded host slows the VM past the link's 2 s, and a control sent again
# is a control the terminal refuses (and logs) again
ANSWER_S = 60


def _silence():
    time.sleep(IDLE_MS * 5 / 1000)  # many main-loop passes: the responder is gone


def _link(vb):
    return SerialLink(vb.port, timeout=ANSWER_S, retries=0)


def test_controls_state_outlives_a_forgotten_responder(tmp_path, keystore_path):
    ks = keystore.load(str(keystore_path))
    key = keystore.terminal_key(ks, TID)
    state = tmp_path / "bus"
    (state / "fs").mkdir(parents=True)
    deploy_virtual(str(state / "fs"), ks, TID, fare=25000, sync_idle_ms=IDLE_MS)
    with VirtualBoard(str(state)) as vb:
        with _link(vb) as link:
            link.key = key
            first = link.identify()["nonce"]
        _silence()
        with _link(vb) as link:
            # a fresh responder: the same nonce, and a control tagged over it is obeyed
            assert link.identify()["nonce"] == first
            link.key = key
            link.set_clock(int(time.time()))
            renewed = link.nonce.hex()
            assert renewed != first
        _silence()
        with _link(vb) as link:
            assert link.identify()["nonce"] == renewed
            old = frames_host.control_body(
                key, bytes.fromhex(first), frames.ACK, struct.pack("<I", 0)
            )
            with pytest.raises(TerminalError) as e:
                link.request(frames.ACK, old, retries=0)
            assert e.value.code == frames_host.ERR_AUTH
            link.key = key
            assert link.ack(0) == 0  # over the renewed nonce: obeyed
            # the boot's untagged clock budget (300 s) spent, then a responder later: still spent
            link.key = None
            link.set_clock(int(time.time()) + 250)
        _silence()
        with _link(vb) as link:
            link.identify()
            with pytest.raises(TerminalError) as e:
                link.set_clock(int(time.time()) + 500)
            assert e.value.code == frames_host.ERR_AUTH
        # the log line comes on the firmware's stderr, the answer on the serial line: on a loaded
        # host the answer can be read first
        deadline = time.monotonic() + 10
        out = "\n".join(vb.lines(0))
        while out.count("usb control 0x") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            out = "\n".join(vb.lines(0))
        assert out.count("usb control 0x") == 2  # both refusals logged by the terminal's alarm
