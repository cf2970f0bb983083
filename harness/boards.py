"""Virtual-board helpers shared by the tests and the bench: an issued emulated card, a deployed
terminal, the figures of its STAT lines.

    ks = keystore.init(path)
    card = rider_card(tmp / "c.card", ks, balance=100000)        # an issued adult card file
    with deployed_board(tmp / "bus", ks, 1001, fare=25000) as vb:  # firmware on the VM, running
        r = vb.tap(card)                                           # {"display", "buzzer", "stat"}
        tap_stats(r)                                               # {"apdus": 9, "ms": 11, ...}

The board is emulator.vboard.VirtualBoard: the real firmware (the deployed .mpy) on the MicroPython
unix port, the emulated PN532 and card, the journal on the NOR flash model.
"""

import contextlib
import os
import re
import time

_STAT = re.compile(r"(\w+)=(-?\d+)")
_SIGN = []


def shared_sign_key():
    """One issuer signing key per process for the replayable keystores of the campaigns (made
    from a seed; RSA key generation cannot be, and a signature's bytes change nothing a tap does)."""
    from host_tools import keystore

    if not _SIGN:
        _SIGN.append(keystore.new_sign_key())
    return _SIGN[0]


def rider_card(path, keystore, balance, card_no=1, valid=86400, holder=None, now=None):
    """An issued emulated card with `balance` Rial (adult unless `holder`), valid for `valid` s;
    `keystore` is a loaded keystore or its path. Returns the card file's path."""
    from card_schema import citizen_host
    from host_tools.sim.virtual import new_emulated_card
    from host_tools import keystore as keystore_mod

    ks = keystore if isinstance(keystore, dict) else keystore_mod.load(str(keystore))
    now = int(time.time()) if now is None else now
    new_emulated_card(
        str(path),
        ks,
        holder=citizen_host.HOLDER_ADULT if holder is None else holder,
        card_no=card_no,
        expiry=now + valid,
        balance=balance,
        now=now,
    )
    return str(path)


def deploy(state_dir, ks, terminal_id, **config):
    """Build the firmware into a board's filesystem (`state_dir`/fs.img) and provision it as
    terminal `terminal_id` (config: fare, line, profile, fares={...}, deny={...}...). The board is
    off; returns `state_dir`."""
    from host_tools.sim.virtual import deploy_virtual

    state_dir = str(state_dir)
    os.makedirs(state_dir, exist_ok=True)
    deploy_virtual(os.path.join(state_dir, "fs.img"), ks, terminal_id, **config)
    return state_dir


@contextlib.contextmanager
def deployed_board(state_dir, ks, terminal_id, heap="112K", **config):
    """A deployed, running virtual terminal for the block (stopped after it)."""
    from emulator.vboard import VirtualBoard

    with VirtualBoard(deploy(state_dir, ks, terminal_id, **config), heap=heap) as vb:
        yield vb


class SigFrames:
    """Tells a card's issuer-signature read (ReadData of file 0x05 and its 0xAF continuation frames,
    on a card's first tap at a terminal) apart from the tap's other frames, so a harness that faults
    "frame k" of a tap means the same command whether the terminal had the card's ceiling cached
    or not (the read comes before anything is journalled or charged: tests/e2e/test_stolen_keys.py
    faults it on its own).

        sig = SigFrames()
        if sig(frame): ...          # True for the 5 frames of that read (native or ISO-wrapped)
    """

    def __init__(self):
        self.on = False

    def __call__(self, frame):
        f = bytes(frame)
        wrapped = len(f) >= 5 and f[0] == 0x90
        cmd = f[1] if wrapped else f[:1] and f[0]
        if cmd == 0xBD:  # ReadData: file number next (after CLA INS P1 P2 Lc when wrapped)
            self.on = f[5:6] == b"\x05" if wrapped else f[1:2] == b"\x05"
        elif cmd != 0xAF:
            self.on = False
        return self.on


def tap_stats(result):
    """The firmware's figures of one tap (its `STAT| tap apdus=.. ms=.. alloc=..` line) as ints."""
    return {k: int(v) for k, v in _STAT.findall(result["stat"])}
