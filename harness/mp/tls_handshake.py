"""One TLS client handshake on the MicroPython VM (the bench's "TLS on the terminal" figure, run by
harness/tls_heap.py under valgrind's massif for the C heap mbedTLS takes).

    micropython tls_handshake.py PORT tls|plain [CA_DER]

tls: connect to 127.0.0.1:PORT, handshake (the server's certificate pinned when CA_DER is given, as
a terminal would have to), send a byte, read one; plain: the same connect without TLS (the baseline).
Prints the MicroPython heap the exchange allocated (gc off: nothing collected) and the byte read.
"""

import gc
import socket
import sys

port = int(sys.argv[1])
mode = sys.argv[2]
der = None
if len(sys.argv) > 3:
    with open(sys.argv[3], "rb") as f:
        der = f.read()
gc.collect()
used0 = gc.mem_alloc()
gc.disable()
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
if mode == "tls":
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if der:
        ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # (not in the stubs)
        ctx.load_verify_locations(cadata=der)
    else:
        ctx.verify_mode = ssl.CERT_NONE  # type: ignore[attr-defined]
    s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    s.write(b"x")
    got = s.read(1)
else:
    got = b"-"
s.close()
print("mp_heap", gc.mem_alloc() - used0, got)
