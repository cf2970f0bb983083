"""An emulated card on nfcpy's UDP "air" (nfc/clf/udp.py): a Type A ISO 14443-4 card for `udp:HOST:PORT`.

nfcpy's udp driver, as a reader (initiator), sends each frame as one datagram "106A <hex>" to the port
and expects the card's answer the same way; "RFOFF" means the field went off. This module plays the card
side of ISO 14443-3 A (REQA/WUPA -> ATQA, cascade levels 1-2 of the 7-byte UID -> SAK, HLTA) and
ISO 14443-4 (RATS -> ATS, I-blocks with block numbers and chaining, R(ACK)/R(NAK), S(DESELECT)), and
hands every APDU of an I-block to the DESFire card model (emulator.card), which answers both framings.

    srv = NFCUDPCard(card, "127.0.0.1", 54321).serve_in_thread()
    # nfcpy: clf = nfc.ContactlessFrontend("udp:127.0.0.1:54321"); clf.sense(RemoteTarget("106A"))
    srv.stop()

Frames travel without CRC_A (nfcpy's udp driver does not model it). A card model that raises (tearing:
emulator.card.FieldLost) answers nothing, as a card that lost power does; the reader times out.
"""

import logging
import socket
import threading
from binascii import hexlify, unhexlify
from functools import reduce

log = logging.getLogger(__name__)

BRTY = b"106A"
_IDLE, _READY1, _READY2, _ACTIVE, _PROTOCOL, _HALT = range(6)


def _bcc(b):
    return reduce(lambda x, y: x ^ y, b, 0)


class NFCUDPCard:
    """Serve one card (or none: an empty field) on UDP for nfcpy's udp driver."""

    def __init__(self, card=None, host="127.0.0.1", port=54321):
        self._card = card
        self.host, self.port = host, port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread = None
        self.frames = 0
        self.apdus = 0
        self._reset()

    # ---- the field -----------------------------------------------------------------------------
    @property
    def card(self):
        return self._card

    def swap(self, card):
        """Take the current card away (it loses power) and put `card` (None = empty field)."""
        with self._lock:
            old, self._card = self._card, card
            self._reset()
        if old is not None and old is not card:
            old.field_off()

    def remove(self):
        self.swap(None)

    def _reset(self):
        self.state = _IDLE
        self.block = 1  # the card's block number; the first I-block of the reader has 0
        self.last = None  # the last block sent (for R(NAK) retransmission)
        self.chain = b""

    def _power_off(self):
        if self._card is not None:
            self._card.field_off()
        self._reset()

    # ---- one frame -------------------------------------------------------------------------------
    def handle(self, frame):
        """A frame from the reader -> the card's answer (bytes) or None (silence)."""
        with self._lock:
            card = self._card
            if card is None:
                return None
            self.frames += 1
            f = bytes(frame)
            if f in (b"\x26", b"\x52"):  # REQA / WUPA
                if f == b"\x26" and self.state == _HALT:
                    return None
                if self.state in (_ACTIVE, _PROTOCOL):  # a new poll: the reader reset the field
                    self._power_off()
                self.state = _READY1
                return bytes(card.atqa[::-1])  # SENS_RES, LSB first: 44 03
            uid = bytes(card.uid)
            cl1 = b"\x88" + uid[:3]
            cl2 = uid[3:7]
            if self.state == _READY1 and f == b"\x93\x20":
                return cl1 + bytes((_bcc(cl1),))
            if self.state == _READY1 and f == b"\x93\x70" + cl1 + bytes((_bcc(cl1),)):
                self.state = _READY2
                return b"\x04"  # SAK: UID not complete
            if self.state == _READY2 and f == b"\x95\x20":
                return cl2 + bytes((_bcc(cl2),))
            if self.state == _READY2 and f == b"\x95\x70" + cl2 + bytes((_bcc(cl2),)):
                self.state = _ACTIVE
                return bytes((card.sak,))
            if f[:2] == b"\x50\x00":  # HLTA
                self._power_off()
                self.state = _HALT
                return None
            if self.state == _ACTIVE and len(f) == 2 and f[0] == 0xE0:  # RATS
                card.select()
                self.state = _PROTOCOL
                self.block = 1
                return bytes(card.ats)
            if self.state == _PROTOCOL and f:
                return self._block(card, f)
            return None

    def _block(self, card, f):
        pcb = f[0]
        if pcb & 0xE2 == 0x02:  # I-block
            bn = pcb & 1
            if pcb & 0x08 or pcb & 0x04:  # CID / NAD: not announced in our ATS
                return None
            self.block = bn
            self.chain += f[1:]
            if pcb & 0x10:  # the reader chains: acknowledge
                self.last = bytes((0xA2 | bn,))
                return self.last
            apdu, self.chain = self.chain, b""
            self.apdus += 1
            try:
                resp = card.transceive(apdu)
            except Exception as e:  # noqa: BLE001  the card lost power (tearing): silence
                log.debug("card transceive failed: %r", e)
                self._reset()
                self.state = _IDLE
                return None
            self.last = bytes((0x02 | bn,)) + bytes(resp)
            return self.last
        if pcb & 0xE6 == 0xA2:  # R-block
            bn = pcb & 1
            if pcb & 0x10:  # R(NAK): presence check or a lost answer
                if self.last is not None and bn == self.block:
                    return self.last
                return bytes((0xA2 | self.block,))
            if self.last is not None and bn == self.block:
                return self.last
            return None
        if pcb & 0xF7 == 0xC2:  # S(DESELECT)
            card.field_off()
            self._reset()
            self.state = _HALT
            return bytes((0xC2,))
        return None

    # ---- serving -------------------------------------------------------------------------------
    def serve_forever(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                break
            if data.startswith(b"RFOFF"):
                with self._lock:
                    self._power_off()
                continue
            try:
                brty, hexdata = data.split()
                frame = unhexlify(hexdata)
            except ValueError:
                continue
            if brty != BRTY:
                continue  # Type B / F polls: a Type A card stays silent
            resp = self.handle(frame)
            if resp is not None:
                try:
                    self.sock.sendto(BRTY + b" " + hexlify(resp), addr)
                except OSError:
                    pass

    def serve_in_thread(self):
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.serve_forever, name="nfc-udp-card", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
