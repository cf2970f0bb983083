"""Config and keys: small JSON files, replaced atomically, so a power cut leaves the old or the new.

    from firmware import store
    cfg = store.load("config.json", {})      # the default only when the file was never saved
    cfg["fare"] = 30000
    store.save("config.json", cfg)

On the ESP32 the files live on littlefs (vfs.VfsLfs2 on the vfs partition, mounted by MicroPython's
boot); on the virtual board on the host's filesystem. save() writes `<name>.new` completely, closes it,
then renames it over `<name>`. littlefs commits a rename as one copy-on-write, CRC-checked metadata
update, so after a power cut at any instant the directory names either the old file or the new,
complete one (POSIX rename gives the same on the host). A `<name>.new` left by a cut before the rename
is never read; the next save overwrites it. A file that is there but does not parse is an error
(ValueError), never silently replaced by the default: it may be recoverable.
Tested by tests/firmware/test_store_lfs.py: a power cut at every flash write of a save on littlefs.
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


def save(name, obj):
    """Replace `name` with `obj` as JSON, atomically."""
    tmp = name + ".new"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.rename(tmp, name)
