"""ESP32 images: the binary partition table of a board's partitions.csv, MicroPython's merged image
with that table in it, and esptool (a library: a declared dependency) writing it onto a blank board
(`tapkit flash --firmware-image`).

    table = partition_table(boards.path("esp32-devkitc", "partitions.csv"))   # 0xC00 bytes
    for argv in esptool_command("/dev/ttyUSB0", "esp32-devkitc", "ESP32_GENERIC.bin"):
        run_esptool(argv)

MicroPython's ESP32 .bin is one merged image, written at 0x1000: the second-stage bootloader, the
partition table at 0x8000 (file offset 0x7000) and the app at 0x10000 (file offset 0xF000), as the
port's makeimg.py puts them together. Writing a table at 0x8000 in the same esptool command overlaps
the image (esptool refuses); so the board's table replaces the image's own, in a copy, the way
makeimg.py puts a board's table in, and one file is written.
"""

import hashlib
import os
import struct
import sys
import tempfile

import boards
from host_tools import TapkitError


class ImageError(TapkitError):
    pass


_PT_TYPES = {"app": 0x00, "data": 0x01}
_PT_SUBTYPES = {
    "factory": 0x00,
    "test": 0x20,
    "ota": 0x00,
    "phy": 0x01,
    "nvs": 0x02,
    "coredump": 0x03,
    "nvs_keys": 0x04,
    "efuse": 0x05,
    "fat": 0x81,
    "spiffs": 0x82,
    "littlefs": 0x83,
}


def _pt_int(text):
    text = text.strip()
    mult = {"K": 1024, "M": 1024 * 1024}.get(text[-1:].upper(), 1)
    return int(text[:-1] if mult > 1 else text, 0) * mult


def partition_table(csv_path, encrypt=()):
    """The binary ESP32 partition table (what gen_esp32part.py makes) of a partitions.csv; the
    partitions named in `encrypt` get the encrypted flag too."""
    entries = b""
    with open(csv_path) as f:
        for n, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            cols = [c.strip() for c in line.split(",")] + [""] * 6
            name, ptype, sub, offset, size, flags = cols[:6]
            try:
                t = _PT_TYPES[ptype] if ptype in _PT_TYPES else int(ptype, 0)
                st = _PT_SUBTYPES[sub] if sub in _PT_SUBTYPES else int(sub, 0)
                if ptype == "app" and sub.startswith("ota_"):
                    st = 0x10 + int(sub[4:])
                entries += struct.pack(
                    "<2sBBLL16sL",
                    b"\xaa\x50",
                    t,
                    st,
                    _pt_int(offset),
                    _pt_int(size),
                    name.encode()[:16],
                    1 if "encrypted" in flags or name in encrypt else 0,
                )
            except (KeyError, ValueError):
                raise ImageError(
                    "%s line %d: bad partition entry %r" % (csv_path, n, line)
                ) from None
    table = entries + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    return table + b"\xff" * (0xC00 - len(table))


# Flash encryption (`tapkit flash --flash-encryption KEY`): what is encrypted on the chip. vfs holds
# keys.json and config.json; the journal stays plain: the power-safe journal programs a failed slot
# to zeros over what it wrote (NOR bit clearing), which an encrypted partition cannot do, and its
# records are MAC'd (not secret from someone with the chip in hand).
ENCRYPTED = ("vfs",)


def encryption_commands(port, keyfile):
    """The espefuse commands that burn a host-made flash-encryption key (256-bit, from
    `espsecure.py generate_flash_encryption_key`, kept with the issuer's keystore) and turn flash
    encryption on (release mode: the ROM's UART download mode can no longer read or write plain
    flash). IRREVERSIBLE: only with an explicit --flash-encryption; never run by default."""
    if not os.path.exists(keyfile):
        raise ImageError("no flash-encryption key %s" % keyfile)
    fuse = [
        sys.executable,
        "-m",
        "espefuse",
        "--chip",
        "esp32",
        "--port",
        port,
        "--do-not-confirm",
    ]
    return [
        fuse + ["burn_key", "flash_encryption", keyfile],
        fuse + ["burn_efuse", "FLASH_CRYPT_CONFIG", "0xF"],
        fuse + ["burn_efuse", "FLASH_CRYPT_CNT", "127"],
        fuse + ["burn_efuse", "DISABLE_DL_DECRYPT", "1", "DISABLE_DL_CACHE", "1"],
    ]


_FLASH_AT = 0x1000  # where MicroPython's merged ESP32 image is written (the bootloader's offset)
_TABLE_AT = 0x8000
_APP_AT = 0x10000


def merged_image(board, image, out_dir, encrypt=()):
    """A copy of MicroPython's merged image `image` with the board's partition table in place of its
    own (out_dir/<image name>-<board>.bin). Refuses an image that is not a merged one (an app-only
    .bin) and an app that does not fit the board's factory partition."""
    spec = boards.spec(board)
    csv = boards.path(board, spec.get("partitions", "partitions.csv"))
    table = partition_table(csv, encrypt)
    try:
        with open(image, "rb") as f:
            data = bytearray(f.read())
    except OSError as e:
        raise ImageError("cannot read firmware image %s: %s" % (image, e.strerror)) from None
    t, a = _TABLE_AT - _FLASH_AT, _APP_AT - _FLASH_AT
    if len(data) <= a or data[0] != 0xE9 or data[t : t + 2] != b"\xaa\x50" or data[a] != 0xE9:
        raise ImageError(
            "%s is not MicroPython's merged ESP32 image (bootloader, partition table and app, "
            "written at 0x1000): use the .bin from micropython.org/download/ESP32_GENERIC" % image
        )
    factory = [(off, size) for name, off, size in _entries(table) if name in ("factory", "ota_0")]
    if not factory or factory[0][0] != _APP_AT:
        raise ImageError("%s: the board's app partition must start at 0x10000" % csv)
    if len(data) - a > factory[0][1]:
        raise ImageError(
            "%s: the app (%d bytes) does not fit the board's app partition (%d bytes)"
            % (image, len(data) - a, factory[0][1])
        )
    data[t : t + len(table)] = table
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(
        out_dir, "%s-%s.bin" % (os.path.splitext(os.path.basename(image))[0], board)
    )
    with open(out, "wb") as f:
        f.write(data)
    return out


def _entries(table):
    out = []
    for i in range(0, len(table), 32):
        magic, _t, _st, off, size, name, _fl = struct.unpack_from("<2sBBLL16sL", table, i)
        if magic != b"\xaa\x50":
            break
        out.append((name.rstrip(b"\0").decode(), off, size))
    return out


def esptool_command(port, board, image, baud=460800, out_dir=None, encrypt=False):
    """esptool's arguments (for run_esptool) that erase a blank board and write MicroPython's merged
    image with the board's partition table in it (merged_image) at 0x1000; `encrypt`: for a chip
    with flash encryption on (encryption_commands), the image written through the chip's
    encryption (--encrypt) and the ENCRYPTED partitions flagged in the table."""
    try:
        spec = boards.spec(board)
    except boards.UnknownBoard as e:
        raise ImageError(str(e)) from None
    if spec.get("platform") != "esp32":
        raise ImageError("board %s is not an ESP32: nothing to write with esptool" % board)
    if not os.path.exists(image):
        raise ImageError("no firmware image %s" % image)
    out_dir = out_dir or tempfile.mkdtemp(prefix="tapkit-%s-" % board)
    merged = merged_image(board, image, out_dir, ENCRYPTED if encrypt else ())
    esptool = ["--chip", "esp32", "--port", port]
    write = ["--baud", str(baud), "write-flash"] + (["--encrypt"] if encrypt else ["-z"])
    return [
        esptool + ["erase-flash"],
        esptool + write + [hex(_FLASH_AT), merged],
    ]


def run_esptool(argv):
    """Run esptool as a library (esptool.main) with `argv`; its errors as one ImageError line."""
    try:
        import esptool
    except ImportError:
        raise ImageError("--firmware-image needs esptool: pip install esptool") from None
    try:
        esptool.main(list(argv))
    except esptool.FatalError as e:  # several lines (the cause, a hint): the first paragraph
        raise ImageError(
            "esptool: %s" % " ".join(str(e).strip().split("\n\n")[0].split())
        ) from None
    except SystemExit as e:
        if e.code:
            raise ImageError("esptool failed (exit %s)" % e.code) from None
    except OSError as e:  # the port (pyserial's SerialException is an OSError)
        raise ImageError("esptool: %s" % e) from None
