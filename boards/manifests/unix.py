# The virtual board (MicroPython's unix port, emulator/vboard.py): the common firmware, the unix
# adapter and its reader wire (a TCP socket to the PN532 emulator). Its "frozen" modules (the NOR
# flash model, the storage mount) come with the board itself, not its filesystem.
include("common.py")
module("hal_unix.py", package="firmware")
module("uart_socket.py", package="firmware")
