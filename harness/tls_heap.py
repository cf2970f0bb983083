"""The heap a TLS handshake would cost a terminal, measured on the MicroPython VM (the bench's "TLS on
the terminal" row; not installed).

MicroPython's `ssl` on the unix port is mbedTLS, as on the ESP32, and mbedTLS takes its memory from
the C heap (malloc), not from the 112 KB MicroPython heap. So harness/mp/tls_handshake.py runs under
valgrind's massif (exact peak: --peak-inaccuracy=0) twice against a TLS 1.2 server on 127.0.0.1 with a
fresh P-256 ECDSA certificate (pinned by the client, as a terminal would have to): once with the
handshake, once with the same connect in plain TCP; the difference of the two peaks is what the
handshake needs on top of everything else. Its MicroPython-heap share is printed by the script.

    r = measure()   # {"c_heap_peak", "mp_heap", "cipher"} or raises Unavailable
"""

import datetime
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

from harness import vm


class Unavailable(Exception):
    """No valgrind, or the VM has no ssl module: the bench says so."""


def _cert(d):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    paths = [os.path.join(d, n) for n in ("cert.pem", "key.pem", "cert.der")]
    with open(paths[0], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(paths[2], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.DER))
    return paths


class _Server:
    """TLS 1.2 on 127.0.0.1: answers one byte with one byte; plain connects are let go."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.cipher = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.settimeout(120)
                t = self.ctx.wrap_socket(c, server_side=True)
                self.cipher = t.cipher()[0]
                t.recv(1)
                t.sendall(b"y")
                t.close()
            except (OSError, ssl.SSLError):
                c.close()

    def close(self):
        self.sock.close()


def _peak(massif_file):
    with open(massif_file) as f:
        return max(int(v) for v in re.findall(r"^mem_heap_B=(\d+)", f.read(), re.M))


def measure(heap="112K"):
    valgrind = shutil.which("valgrind")
    if not valgrind:
        raise Unavailable("valgrind is not installed")
    exe = subprocess.run(
        [vm.micropython_exe(), "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
    ).stdout.strip()  # the binary itself (a pyenv shim is a shell script)
    probe = subprocess.run([exe, "-c", "import ssl"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise Unavailable("this MicroPython has no ssl module")
    with tempfile.TemporaryDirectory() as d:
        cert, key, der = _cert(d)
        srv = _Server(cert, key)
        try:
            peaks = {}
            mp_heap = None
            for mode in ("plain", "tls"):
                out = os.path.join(d, "massif." + mode)
                argv = [valgrind, "--tool=massif", "--peak-inaccuracy=0.0"]
                argv += ["--massif-out-file=" + out, exe, "-X", "heapsize=" + heap]
                argv += [vm.script("tls_handshake"), str(srv.port), mode]
                argv += [der] if mode == "tls" else []
                p = subprocess.run(
                    argv,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                m = re.search(r"mp_heap (\d+) b'(.)'", p.stdout)
                if p.returncode != 0 or not m:
                    raise RuntimeError("tls handshake on the VM failed: %s" % p.stderr[-300:])
                if mode == "tls":
                    mp_heap = int(m.group(1))
                peaks[mode] = _peak(out)
        finally:
            srv.close()
    return {
        "c_heap_peak": peaks["tls"] - peaks["plain"],
        "mp_heap": mp_heap,
        "cipher": srv.cipher,
        "heap": heap,
    }
