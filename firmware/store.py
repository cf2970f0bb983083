"""Every file the terminal writes: replaced atomically, so a power cut leaves the old or the new.

    from firmware import store
    cfg = store.load("config.json", {})      # the default only when the file was never saved
    store.save("config.json", cfg)          # JSON: config, keys, the clock (firmware/hal.py)
    store.write("fares.bin", blob)          # bytes: the signed config blobs (firmware/install.py)
    store.append("install.part", chunk)     # a staging file (below; its first chunk: write())
    store.rename("install.part", "deny.bin")  # the verified staging file becomes current

On the ESP32 the files live on littlefs (vfs.VfsLfs2 on the vfs partition, mounted by MicroPython's
boot); on the virtual board on littlefs too (its fs.img). save() and write() write `<name>.new`
completely, close it, then rename it over `<name>`. littlefs commits a rename as one copy-on-write,
CRC-checked metadata update, so after a power cut at any instant the directory names either the old
file or the new, complete one (POSIX rename gives the same on a host filesystem). A `<name>.new` left
by a cut before the rename is never read; the next save overwrites it. A file that is there but does
not parse is an error (ValueError), never silently replaced by the default: it may be recoverable.

append() is the one write that is not atomic, on purpose: a staging file (the chunks of a config blob
arriving over serial or Wi-Fi) is only used after its last chunk, when the whole file has been
verified (its length, the blob's signature, its content); what a cut leaves of it is resumed from its
length. rename() then makes it current, atomically (firmware/install.py).

The journal is not a file: it has its own power-safe layout on a raw flash partition
(firmware/journal.py). Tested by tests/firmware/test_store_lfs.py: a power cut at every flash write
of a save, a blob write and a clock set, on littlefs over the NOR flash model.
"""

import json
import os


def load(name, default=None):
    """The object saved under `name`, or `default` when there is no such file."""
    try:
        f = open(name)
    except OSError:  # ENOENT: never saved (or the rename of the first save never landed)
        return default
    with f:
        return json.load(f)


def save(name, data):
    """Replace `name` with the object `data` as JSON, atomically."""
    tmp = name + ".new"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, name)


def write(name, data):
    """Replace `name` with the bytes `data`, atomically."""
    tmp = name + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, name)


def append(name, data):
    """Add `data` to the end of the staging file `name`. Not atomic (module doc)."""
    with open(name, "ab") as f:
        f.write(data)


def rename(src, dst):
    """Make the complete staging file `src` the file `dst`, atomically (littlefs commits a rename
    whole: a power cut leaves the old `dst` or the new one)."""
    os.rename(src, dst)
