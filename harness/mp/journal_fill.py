"""Fill a terminal's journal on the VM with the terminal's own code (tests/e2e/test_journal_full.py).

micropython journal_fill.py FLASH SIZE KEYHEX TID N
"""

import sys
import binascii
from norflash import NORFlash
from firmware.journal import Journal

path, size, key, tid, n = (
    sys.argv[1],
    int(sys.argv[2]),
    sys.argv[3],
    int(sys.argv[4]),
    int(sys.argv[5]),
)
j = Journal(NORFlash(path, size), binascii.unhexlify(key), tid)
for i in range(n):
    j.append_tap(
        time=1700000000 + i,
        uid=bytes([4, 9, 9, 9, 9, 9, i & 255]),
        kind=1,
        amount=25000,
        balance=1000000 - 25000 * (i + 1),
        counter=i + 1,
        line=7,
    )
print(j.head_seq, j.fill)
