"""Bridge an emulated card into real pcscd through the vsmartcard vpcd driver.

The vpcd driver (loaded by pcscd, /etc/reader.conf.d/vpcd) listens on TCP 127.0.0.1:35963 for
reader "Virtual PCD 00 00" (35964 for "... 00 01"). The virtual card connects to it as a client.
Every message either way is a 2-byte big-endian length and a payload (vsmartcard
virtualsmartcard/src/vpcd/vpcd.c):

    driver -> card   00 01 00     power off          (no reply)
                     00 01 01     power on           (no reply)
                     00 01 02     reset              (no reply)
                     00 01 04     get ATR            -> reply: the ATR
                     LL LL apdu   a command APDU     -> reply: the response APDU

Only the one-byte messages 0 to 4 are control codes (vpcd.c's VPCD_CTRL_*; 3 is unused). Any other
one-byte message is an APDU: a native DESFire command such as GetVersion `60`, its continuation `AF`
or GetApplicationIDs `6A` is one byte long.

Card presence is the connection itself: the driver asks for the ATR on every presence poll, and a
closed socket (or an empty reply) makes it eject the card and wait for the next client. So
`remove()` closes the connection and `swap(card)` closes it and connects again as the new card.
If pcscd restarts, the bridge connects again.

    bridge = VPCDBridge(card).serve_in_thread()
    ...pyscard on "Virtual PCD 00 00"...
    bridge.swap(other_card); bridge.remove(); bridge.stop()
"""

import logging
import socket
import struct
import threading
import time

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963

CTRL_OFF = 0
CTRL_ON = 1
CTRL_RESET = 2
CTRL_ATR = 4
CTRL_CODES = range(5)  # one-byte messages 0..4 are control codes; any other byte is an APDU


def atr_from_ats(ats):
    """The ATR a PC/SC reader reports for an ISO 14443-4 type A card (PC/SC part 3, 3.1.3.2.3):
    3B 8n 80 01 <historical bytes of the ATS> TCK. DESFire EV1 (ATS 06 75 77 81 02 80) ->
    3B 81 80 01 80 80."""
    ats = bytes(ats or b"")
    hist = b""
    if len(ats) >= 2:
        t0 = ats[1]
        i = 2 + (t0 & 0x70).bit_count()  # skip TA(1), TB(1), TC(1) when present
        hist = ats[i : ats[0]] if ats[0] <= len(ats) else ats[i:]
    hist = hist[:15]
    body = bytes((0x80 | len(hist), 0x80, 0x01)) + hist
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


def card_atr(card):
    atr = getattr(card, "atr", None)
    if atr:
        return bytes(atr)
    return atr_from_ats(getattr(card, "ats", b""))


class VPCDBridge:
    """Serve `card` (an object with `transceive(apdu)->bytes`, `field_off()`, and `atr` or `ats`)
    to the vpcd driver. `card=None` means no card in the reader."""

    def __init__(self, card=None, host=VPCD_HOST, port=VPCD_PORT):
        self.host = host
        self.port = port
        self._card = card
        self._sock = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self.apdus = 0
        self.connects = 0

    @property
    def card(self):
        return self._card

    # ---- connection ------------------------------------------------------------------------
    def connect(self, retries=50, delay=0.1):
        """Connect to the driver (pcscd must be running with vpcd); returns the socket."""
        last = None
        for _ in range(max(1, retries)):
            if self._stop.is_set():
                break
            try:
                s = socket.create_connection((self.host, self.port), timeout=2)
            except OSError as e:
                last = e
                time.sleep(delay)
                continue
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._close_locked()
                self._sock = s
            self.connects += 1
            return s
        raise ConnectionError(
            f"cannot reach the vpcd driver on {self.host}:{self.port} ({last}): "
            "is pcscd running with vsmartcard-vpcd?"
        )

    def _close_locked(self):
        s, self._sock = self._sock, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in the serve thread
            except OSError:
                pass
            s.close()

    # ---- card changes (desk reader sessions) -------------------------------------------------
    def swap(self, card):
        """Take the current card out and put `card` in (None = leave the reader empty)."""
        with self._lock:
            old, self._card = self._card, card
            self._close_locked()
        if old is not None and old is not card:
            _field_off(old)

    def remove(self):
        """Take the card out: the driver sees no card until `swap()` puts one back."""
        self.swap(None)

    # ---- serving -----------------------------------------------------------------------------
    def serve_forever(self, reconnect_delay=0.2):
        """Answer the driver until stop(); reconnect after pcscd restarts or a card swap."""
        while not self._stop.is_set():
            with self._lock:
                card, sock = self._card, self._sock
            if card is None:
                self._stop.wait(0.05)
                continue
            if sock is None:
                try:
                    sock = self.connect(retries=1)
                except ConnectionError:
                    self._stop.wait(reconnect_delay)
                    continue
            try:
                msg = _recv_msg(sock)
            except OSError:
                msg = None
            if msg is None:  # the driver (pcscd) went away, or we closed for a swap
                with self._lock:
                    if self._sock is sock:
                        self._close_locked()
                        if card is self._card:
                            _field_off(card)
                continue
            reply = self._handle(card, msg)
            if reply is not None:
                try:
                    sock.sendall(struct.pack(">H", len(reply)) + reply)
                except OSError:
                    continue

    def _handle(self, card, msg):
        if not msg:
            return None
        if len(msg) == 1 and msg[0] in CTRL_CODES:
            ctrl = msg[0]
            if ctrl == CTRL_ATR:
                return card_atr(card)
            if ctrl in (CTRL_OFF, CTRL_RESET):
                _field_off(card)
            return None  # power on / off / reset have no reply
        self.apdus += 1
        if msg[:2] == b"\xff\xca" and len(msg) >= 4:
            # PC/SC part 3 GET DATA: a contactless PC/SC reader (ACR122U, ...) answers this itself
            # with the UID (P1=00) or the ATS historical bytes (P1=01); vpcd is only a pipe, so the
            # bridge plays the reader's part here.
            if msg[2] == 0x00:
                return bytes(card.uid) + b"\x90\x00"
            return b"\x6a\x81"  # function not supported
        try:
            resp = card.transceive(bytes(msg))
        except Exception as e:  # noqa: BLE001  a failing card model answers like a mute card
            log.warning("card transceive failed: %r", e)
            return b"\x6f\x00"
        if not resp:
            return b"\x6f\x00"
        return bytes(resp)

    def serve_in_thread(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self.serve_forever, name="vpcd-bridge", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        with self._lock:
            self._close_locked()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _field_off(card):
    off = getattr(card, "field_off", None)
    if off is not None:
        off()


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _recv_msg(sock):
    head = _recv_exact(sock, 2)
    if head is None:
        return None
    (n,) = struct.unpack(">H", head)
    if n == 0:
        return b""
    return _recv_exact(sock, n)
