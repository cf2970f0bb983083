"""The virtual fleet: deploy the firmware onto a virtual board, make emulated citizen cards, and talk
to a running virtual board (`tapkit emulate`, the demo, the bench and the tests all use these).

    img = deploy_virtual("run/bus-1/fs.img", ks, 1001, fare=25000, line=12)  # the board is off
    vb = emulator.vboard.VirtualBoard("run/bus-1"); vb.start()
    uid = new_emulated_card("alice.card", ks, holder=0, card_no=100, balance=200000)
    tap("run/bus-1", "alice.card")       # through the running board's control socket
"""

import os
import tempfile
import time

from host_tools import TapkitError

BOARD = (
    "unix-virtual"  # the board definition (boards/unix-virtual) and manifest of a virtual board
)


def deploy_virtual(fs, ks, terminal_id, **over):
    """Build the firmware into a virtual board's filesystem and provision it (the board is off).

    The firmware is what the virtual board's manifest names (mpybuild, boards/manifests/unix.py). fs
    is the board's littlefs image (`<state>/fs.img`); `<state>/fs` (the name of older tapkit's
    filesystem directory) means `<state>/fs.img`. Returns the image's path."""
    from emulator import lfsimage
    from host_tools.fleet.provision import terminal_files
    from mpybuild import cross, manifest

    img = fs if fs.endswith(".img") else fs.rstrip("/" + os.sep) + ".img"
    with tempfile.TemporaryDirectory() as out:
        files = cross.read_built(out, cross.build(out, manifest.for_board(BOARD)))
    for name, data in terminal_files(ks, terminal_id, **over).items():
        files["/" + name] = data.encode() if isinstance(data, str) else data
    from emulator.vboard import vfs_size

    lfsimage.write_files(img, files, size=vfs_size(BOARD))  # the board's vfs partition
    return img


def new_emulated_card(
    path, ks, holder=0, card_no=1, expiry=None, balance=0, now=None, journal=None, uid=None
):
    """Create a blank emulated card file and issue it, as the card office would (demo, bench, tests).

    Returns the card's UID (`uid`: this one, else a random NXP UID). The card file is the card's EEPROM: tap it on a virtual terminal, serve it
    with `tapkit emulate card`, or open it with `--reader emulator:PATH`.
    """
    from card_schema.desfire_admin import DESFireAdmin
    from emulator.card import DESFireCard
    from host_tools.cardoffice import cardops
    from host_tools.cardoffice.readers import EmulatorReader

    now = int(time.time()) if now is None else now
    DESFireCard.blank(uid).save(str(path))
    with EmulatorReader(str(path)) as r:
        cardops.issue(
            DESFireAdmin(r.transceive),
            ks,
            r.uid,
            holder=holder,
            card_no=card_no,
            expiry=now + 365 * 86400 if expiry is None else expiry,
            balance=balance,
            now=now,
            journal=journal,  # an office journal (host_tools.cardoffice.journal) records it
        )
        return bytes(r.uid)


def control(board, req):
    """One request to a running virtual board's control socket (its state directory); the answer
    dict. Errors, and answers that are not ok, become one TapkitError line."""
    from emulator.vboard import BoardError
    from emulator.vboard import control as send

    try:
        r = send(board, req)
    except BoardError as e:
        raise TapkitError(str(e))
    if not r.get("ok"):
        raise TapkitError("%s failed: %s" % (req["cmd"], r.get("error")))
    return r


def tap(board, cardfile, timeout=15.0):
    """Tap a card file on a running virtual board; the answer has its display and buzzer."""
    return control(board, {"cmd": "tap", "card": os.path.abspath(cardfile), "timeout": timeout})


def press(board, keys):
    """Press keys on a running virtual board's keypad (a taximeter line is "FARE RIAL\\n")."""
    return control(board, {"cmd": "press", "keys": keys})
