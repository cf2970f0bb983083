"""The virtual board's errno and socket modules (emulator/esp32_errno.py, esp32_socket.py) have the
ESP32 port's numbers (newlib/lwIP), so firmware that compares an OSError with a Linux number fails
on the virtual board as on a chip (issue 15 item 1: wifi.py's `connect()` check was `== 115`, and
an ESP32 raises 119). The modules are compiled and run as the board runs them (vboard.VLIB)."""

import os
import socket
import subprocess

from emulator import vboard
from mpybuild.cross import compile_file

# The probe is compiled by mpy-cross, as the firmware is: the VM's own compiler would fold
# `errno.NAME` to its built-in (Linux) number at compile time (MICROPY_COMP_MODULE_CONST).
PROBE = """
import gc
gc.collect()
a = gc.mem_alloc()
import errno, socket
gc.collect()
print("cost", gc.mem_alloc() - a)
k = [None] * 16
gc.collect()
a = gc.mem_alloc()
for i in range(8):
    k[i] = socket.native.socket()
gc.collect()
b = gc.mem_alloc()
for i in range(8, 16):
    k[i] = socket.socket()
gc.collect()
print("wrapper", (gc.mem_alloc() - b - (b - a)) // 8)  # one's, beyond the unix port's socket
for x in k:
    x.close()
import select
print(errno.EINPROGRESS, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.EAGAIN,
      errno.EHOSTUNREACH, errno.ECONNABORTED, errno.ENOTCONN)
s = socket.socket()
s.setblocking(False)
try:
    s.connect(socket.getaddrinfo("127.0.0.1", PORT)[0][-1])
except OSError as e:
    print("connect", e.errno, e.errno == errno.EINPROGRESS)
p = select.poll()
p.register(s, select.POLLOUT)
ev = p.poll(5000)
print("poll", len(ev), bool(ev[0][1] & (select.POLLERR | select.POLLHUP)))
try:
    s.send(b"x")
except OSError as e:
    print("send", e.errno)
s.close()
try:
    socket.getaddrinfo("no-such-host.invalid", 80)
except OSError as e:
    print("getaddrinfo", e.errno)
print("native", socket.native.socket is not socket.socket)
"""


def _run(tmp_path, port):
    for mod in ("errno", "socket"):
        compile_file(
            os.path.join(vboard.HERE, vboard.VLIB[mod] + ".py"), str(tmp_path / (mod + ".mpy"))
        )
    (tmp_path / "probe.py").write_text(PROBE.replace("PORT", str(port)))
    compile_file(str(tmp_path / "probe.py"), str(tmp_path / "probe.mpy"))
    os.unlink(tmp_path / "probe.py")
    p = subprocess.run(
        [vboard.micropython_exe(), "-X", "heapsize=112K", "-c", "import probe"],
        env=dict(os.environ, MICROPYPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def test_errno_and_socket_raise_the_esp32_ports_numbers(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: the connection is refused
    try:
        lines = _run(tmp_path, closed.getsockname()[1])
    finally:
        closed.close()
    # newlib's sys/errno.h: EINPROGRESS 119, ETIMEDOUT 116, ECONNRESET 104, ECONNREFUSED 111,
    # EAGAIN 11, EHOSTUNREACH 118, ECONNABORTED 113, ENOTCONN 128 (Linux: 115, 110, 104, 111,
    # 11, 113, 103, 107)
    assert lines[2] == "119 116 104 111 11 118 113 128"
    assert lines[3] == "connect 119 True"  # what an ESP32 raises (a Linux VM: 115)
    assert lines[4] == "poll 1 True"  # the wrapped socket polls; the refusal shows as POLLERR
    assert lines[5] == "send 111"  # ECONNREFUSED: the same number on both
    assert lines[6] == "getaddrinfo -202"  # lwIP's EAI_FAIL, negated, as modsocket.c raises it
    assert lines[7] == "native True"  # the UART wire's own sockets (firmware/uart_socket.py)


def test_the_boards_heap_refund_is_what_the_stand_ins_cost(tmp_path):
    """An ESP32 has errno and socket as C modules in flash; the virtual board gives their heap
    back (vboard.HEAP_REFUND): the modules (measured on a board: tests/e2e/test_vboard_esp32_net.py;
    in an empty VM about as much) and the wrapper a socket has beyond the unix port's own."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        lines = _run(tmp_path, s.getsockname()[1])
    assert abs(int(lines[0].split()[1]) - vboard.REFUND_MODULES) <= 128
    assert lines[1] == "wrapper %d" % vboard.REFUND_SOCKET
