"""Firmware releases: the bundle a terminal updates itself from (OTA), device and host side.

A bundle is a signed blob (card_schema/signed.py) of kind KIND_FIRMWARE: sealed with the terminal's
own config key like its fare tables, so it travels the same ways (the Wi-Fi answer's chunks over
`POST /v1/ota`, the serial INSTALL request) into the same staging file, and is verified where it
lies (signed.verify_file: CMAC streamed through 512 bytes, C speed) before anything of it is used.
Its payload (little endian):

    head   (HEAD_FMT, HEAD bytes)
      0   4  magic      "TKR1"
      4   4  release    release number (u32, grows with every release; the fleet compares these)
      8  16  board      board name (boards/<name>), NUL padded: a bundle for another board is refused
     24   8  platform   "esp32" | "unix"
     32  16  fw         firmware.VERSION of the set, NUL padded (what IDENTIFY "fw" then says)
     48   4  min_fares  the oldest fare table (fares_ver) the set runs with (0: any)
     52   4  min_deny   the oldest deny list (deny_ver) it runs with (0: any)
     56   2  count      files that follow
    entries (ENTRY_FMT, ENTRY bytes each, `count` of them)
      0  32  path       below the set's folder, e.g. "firmware/app.mpy", NUL padded
     32   4  size
     36  32  sha256     of the file: checked again when it is written beside the running set
    data   the files, in entry order, back to back

    release.head(payload_bytes)      -> (release, board, platform, fw, min_fares, min_deny, count)
    release.entry(buf, 0)            -> (path, size, sha256)
"""

import struct

KIND_FIRMWARE = 4  # a signed.seal kind beside signed.KIND_* (not a config: never "<name>.bin")
MAGIC = b"TKR1"
HEAD_FMT = "<4sI16s8s16sIIH"
HEAD = 58
ENTRY_FMT = "<32sI32s"
ENTRY = 68

# OTA request (POST /v1/ota, terminal -> server): its status, in clear like the batch head (no rider
# data), MAC'd with the journal key; the answer is the Wi-Fi answer (card_schema/upload.py, TKA2) with
# acked 0 and maybe a chunk of kind KIND_FIRMWARE (from part_off, when it continues that release)
#    0  4 magic "TKO1"          30  4 last     release of the last update that ended
#    4  4 terminal              34  1 result   how it ended (CONFIRMED, ROLLED_BACK, REFUSED; 0)
#    8 16 board (NUL padded)    35  4 wanted   release it asks chunks of (0: a status report;
#                                              state STAGING..TRIAL: the release staged)
#   24  4 running release       39  4 part_off bytes of that release the terminal holds
#   28  1 state (NO_UPDATE..TRIAL)   43 16 iv       fresh random: the answer's MAC covers it
#   29  1 (0)                   59  8 mac      cmac(journal key, bytes 0..58)[:8]
OTA_MAGIC = b"TKO1"
OTA_FMT = "<4sI16sIBBIBII16s8s"
OTA_HEAD = 67
OTA_MACED = 59

# OTA states (firmware/ota.py) and the results of the last update
NO_UPDATE = 0  # "idle": no update under way (not msg.IDLE, a display text)
DOWNLOADING = 1
STAGING = 2  # the bundle verified, its files being written beside the running set
STAGED = 3  # complete, waiting for a safe moment to boot it on trial
TRIAL = 4  # running on trial (self-test pending)
STATES = ("idle", "downloading", "staging", "staged", "trial")
CONFIRMED = 1
ROLLED_BACK = 2
REFUSED = 3
RESULTS = ("", "confirmed", "rolled back", "refused")


def _str(b):
    i = b.find(b"\0")
    return (b if i < 0 else b[:i]).decode()


def head(buf):
    """(release, board, platform, fw, min_fares, min_deny, count) of a payload's head; ValueError
    when it is not a release."""
    if len(buf) < HEAD:
        raise ValueError("release too short")
    magic, rel, board, plat, fw, mf, md, n = struct.unpack_from(HEAD_FMT, buf, 0)
    if magic != MAGIC:
        raise ValueError("not a firmware release")
    return rel, _str(board), _str(plat), _str(fw), mf, md, n


def entry(buf, off=0):
    """(path, size, sha256 bytes) of the entry at `off` of `buf`."""
    path, size, sha = struct.unpack_from(ENTRY_FMT, buf, off)
    return _str(path), size, sha
