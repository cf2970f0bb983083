"""ESP32 images: the binary partition table of a board's partitions.csv, and the esptool command
lines that write MicroPython's merged image and that table onto a blank board (`tapkit flash
--firmware-image`).

    table = partition_table(boards.path("esp32-devkitc", "partitions.csv"))   # 0xC00 bytes
    for argv in esptool_command("/dev/ttyUSB0", "esp32-devkitc", "ESP32_GENERIC.bin"): ...
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


def esptool_command(port, board, image, baud=460800, out_dir=None, encrypt=False):
    """The esptool command line that writes a MicroPython image and the board's partition table
    (boards/<board>/partitions.csv, converted to its binary form next to the build); `encrypt`:
    for a chip with flash encryption on (encryption_commands), the image written through the
    chip's encryption (--encrypt) and the ENCRYPTED partitions flagged in the table."""
    try:
        spec = boards.spec(board)
    except boards.UnknownBoard as e:
        raise ImageError(str(e)) from None
    if spec.get("platform") != "esp32":
        raise ImageError("board %s is not an ESP32: nothing to write with esptool" % board)
    if not os.path.exists(image):
        raise ImageError("no firmware image %s" % image)
    parts = boards.path(board, spec.get("partitions", "partitions.csv"))
    out_dir = out_dir or tempfile.mkdtemp(prefix="tapkit-%s-" % board)
    os.makedirs(out_dir, exist_ok=True)
    table = os.path.join(out_dir, "partitions.bin")
    with open(table, "wb") as f:
        f.write(partition_table(parts, ENCRYPTED if encrypt else ()))
    esptool = [sys.executable, "-m", "esptool", "--chip", "esp32", "--port", port]
    write = ["--baud", str(baud), "write_flash"] + (["--encrypt"] if encrypt else ["-z"])
    return [
        esptool + ["erase_flash"],
        esptool + write + ["0x1000", image, "0x8000", table],
    ]
