"""The virtual board's side of a littlefs image (tests/emulator/test_lfsimage.py): emulator/lfsmount.py
mounts $TAPKIT_STATE/fs.img at "/" on import, as the virtual board does before boot.py."""

import lfsmount  # noqa: F401  (mounts the image on import)
import os

print(open("/lib/pkg/mod.py").read().strip())
print(sorted(os.listdir("/lib")))
with open("/board.txt", "w") as f:
    f.write("written on the board")
os.rename("/lib/pkg/mod.py", "/lib/pkg/moved.py")
os.mkdir("/logs")
with open("/_host/beside.txt", "w") as f:
    f.write("host file")
