"""Every tap path leaves at least 16 KB of the 112 KB VM heap free at its peak (harness/heap_paths.py:
the firmware's own tap on virtual terminals; garbage counted, measured on a 1 MB heap so that no
automatic collection hides any of it; the firmware's own collections in the tap count at their
peak). On main before this (bfcc81f) a tap collected nothing: its 17-33 KB of garbage came on top
of 86-89 KB in use (a cryptolib object and 128-bit subkeys per AES block, the sync code and the
tables' loader resident), and a Wi-Fi board had 95-97 KB in use before a tap."""

from harness import heap_paths

FLOOR = 16 * 1024


def _held(paths, names):
    assert set(paths) == set(names)
    low = {p: v["heap_free"] for p, v in paths.items() if v["heap_free"] < FLOOR}
    assert not low, "paths under %d bytes free at their peak: %s" % (FLOOR, low)


def test_every_tap_path_leaves_16_kb_free(tmp_path):
    _held(heap_paths.heap_paths(str(tmp_path)), heap_paths.PATHS)


def test_a_wifi_board_tap_leaves_16_kb_free(tmp_path):
    """The uploader's code is in the heap only while an exchange is under way, and a card stops
    it: a Wi-Fi board's tap has the heap of a USB-only board's, whatever the server does."""
    _held(heap_paths.wifi_paths(str(tmp_path)), heap_paths.WIFI_PATHS)


def test_a_tap_while_a_host_talks_over_usb_leaves_16_kb_free(tmp_path):
    """A card in the field forgets the sync responder idle between a host's lines (the next line
    loads it again): mid-sync and right after an INSTALL of a deny list, the tap has the heap of a
    terminal no host talks to. Before, the responder stayed: 11,488-13,984 B free."""
    _held(heap_paths.usb_paths(str(tmp_path)), heap_paths.USB_PATHS)
