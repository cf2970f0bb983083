"""Every tap path leaves at least 16 KB of the 112 KB VM heap free at its peak (harness/heap_paths.py:
the firmware's own tap on virtual terminals; garbage counted, measured on a 1 MB heap so that no
collection hides any of it). A blocked card used to leave 4,736 bytes (a cryptolib object and
128-bit subkeys per AES block, the sync code resident while no host talks)."""

from harness import heap_paths

FLOOR = 16 * 1024


def test_every_tap_path_leaves_16_kb_free(tmp_path):
    paths = heap_paths.heap_paths(str(tmp_path))
    assert set(paths) == set(heap_paths.PATHS)
    low = {p: v["heap_free"] for p, v in paths.items() if v["heap_free"] < FLOOR}
    assert not low, "paths under %d bytes free at their peak: %s" % (FLOOR, low)
