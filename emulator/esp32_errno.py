# The virtual board's `errno` module (MicroPython unix port; emulator/vboard.py deploys it as the
# board's errno.mpy, which MicroPython >= 1.21 imports instead of its built-in, extensible errno).
# The names of MicroPython's errno module (py/moderrno.c) with the ESP32 port's numbers: its
# mpconfigport.h sets MICROPY_USE_INTERNAL_ERRNO (0), "errno.h from xtensa-esp32-elf/sys-include/sys",
# i.e. newlib's sys/errno.h, whose numbers lwIP's sockets raise too (ports/esp32/modsocket.c passes
# lwIP's errno to mp_raise_OSError). Sources read: micropython ports/esp32/mpconfigport.h and
# modsocket.c, newlib newlib/libc/include/sys/errno.h.
# Firmware that compares a socket error with a Linux number (EINPROGRESS 115) instead of
# errno.EINPROGRESS fails here as it does on an ESP32.
# No errorcode dict: its heap would be the firmware's, and the ESP32 keeps it in flash.
EPERM = 1
ENOENT = 2
EIO = 5
EBADF = 9
EAGAIN = 11  # = EWOULDBLOCK
ENOMEM = 12
EACCES = 13
EEXIST = 17
ENODEV = 19
EISDIR = 21
EINVAL = 22
EOPNOTSUPP = 95
ECONNRESET = 104
ENOBUFS = 105
ECONNREFUSED = 111
EADDRINUSE = 112  # Linux 98
ECONNABORTED = 113  # Linux 103 (113 is EHOSTUNREACH on Linux)
ETIMEDOUT = 116  # Linux 110
EHOSTUNREACH = 118  # Linux 113
EINPROGRESS = 119  # Linux 115
EALREADY = 120  # Linux 114
ENOTCONN = 128  # Linux 107
