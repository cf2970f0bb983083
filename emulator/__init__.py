"""tapkit emulator: emulated DESFire cards, the PN532 reader chip, NOR flash, bridges and the virtual
board (CPython; norflash.py is also deployed onto the virtual board as its flash chip)."""
