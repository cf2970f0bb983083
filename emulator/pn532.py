"""A PN532 reader chip, emulated at the level of its host frames (HSU, i.e. UART).

The firmware's PN532 driver talks to this exactly as it talks to the real chip on an ESP32's UART2:
normal information frames (NXP UM0701-02, 6.2.1)

    host -> chip   00 00 FF LEN LCS D4 CMD data DCS 00
    chip -> host   00 00 FF 00 FF 00                      ACK  (frame received, command accepted)
                   00 00 FF LEN LCS D5 CMD+1 data DCS 00  the response
                   00 00 FF 01 FF 7F 81 00                error frame (syntax error in the command)

Behaviour modelled on the chip:
- bytes before a start code `00 FF` are skipped: the HSU wake-up preamble (`55 55 00 00 ...`),
  postambles, line noise. A frame whose LCS or DCS does not check is dropped silently (the chip only
  ACKs what it received correctly; the host times out waiting for the ACK and sends again) and the
  parser resynchronises on the next start code.
- a host ACK (`00 00 FF 00 FF 00`) is accepted and ignored (it aborts a command on the real chip; the
  emulator answers at once, so there is nothing to abort); a host NACK (`00 00 FF FF 00 00`) makes the
  chip send its last response frame again.
- a well-formed frame with an unknown command or bad parameters is ACKed, then answered with the error
  frame, as the chip does.
- extended frames (`00 FF FF FF ...`) are not supported and are skipped like noise.
- the chip's pace is not the host computer's: the ACK goes out the moment a frame is received,
  before the command runs, as on the chip (served over TCP: `handle_bytes(data, send)`). A frame
  from the host while a command is under way aborts it (UM0701-02 6.2.1.3): served, a command
  whose frame is followed on the line by another one is ACKed and not run (the host resent it, or
  sent its abort ACK, before a slowed emulator got to it), and an answer is not sent when the
  host's next bytes came while the command ran (the host stopped waiting). So a host that times
  out only because this process was slow (a loaded machine) never gets a stale answer for its next
  command, and a card never runs a command twice because the host resent it.
- a card whose answer comes after the host stopped waiting: its `transceive` returns `NO_ANSWER`
  (it ran the command); the chip sends the ACK and nothing more for that command (the host's next
  frame aborts it), whatever the host's timeout and however slow the machine.

The RF side is a `RFField` holding zero or one card. A card is any object with `uid` (bytes), `atqa`
(2 bytes in the MSB-first notation of NXP datasheets, DESFire EV1: `03 44`; the PN532 reports
SENS_RES in that same order), `sak` (int; bit 0x20 = ISO 14443-4 compliant), `ats` (bytes starting
with TL, e.g. `06 75 77 81 02 80`), `transceive(frame) -> bytes` (one ISO-DEP INF exchange: an APDU or
wrapped DESFire command) and `field_off()` (the card loses power: session state, uncommitted
transactions).

    field = RFField()
    chip = PN532Emulator(field)
    chip.handle_bytes(bytes.fromhex("0000ff02fed4022a00"))   # ACK + D5 03 32 01 06 07
    chip.serve()                  # TCP server on 127.0.0.1:chip.port, the firmware's "UART"
    field.place(card); field.remove()
    chip.close()
"""

import logging
import random
import select
import socket
import threading
import time

log = logging.getLogger(__name__)

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
# what a card's transceive (or a command handler) returns for an answer that comes after the host
# stopped waiting: the chip sends no response for that command (module doc)
NO_ANSWER = type("NoAnswer", (), {"__repr__": lambda self: "NO_ANSWER"})()

TFI_HOST = 0xD4
TFI_CHIP = 0xD5

# commands (UM0701-02 chapter 7)
CMD_DIAGNOSE = 0x00
CMD_GET_FIRMWARE_VERSION = 0x02
CMD_GET_GENERAL_STATUS = 0x04
CMD_SAM_CONFIGURATION = 0x14
CMD_RF_CONFIGURATION = 0x32
CMD_IN_DATA_EXCHANGE = 0x40
CMD_IN_DESELECT = 0x44
CMD_IN_LIST_PASSIVE_TARGET = 0x4A
CMD_IN_RELEASE = 0x52

# status byte error codes (UM0701-02 table 13), low 6 bits of the status byte
ERR_OK = 0x00
ERR_TIMEOUT = 0x01  # the target did not answer (left the field)
ERR_BUFFER = 0x07  # communication buffer size insufficient
ERR_INVALID_PARAM = 0x10
ERR_CONTEXT = 0x27  # command not acceptable in the current context (no such target)

FIRMWARE_VERSION = (0x32, 0x01, 0x06, 0x07)  # IC PN532, Ver 1, Rev 6, Support ISO-A|B|18092

# the largest normal frame carries LEN = 255 bytes of TFI + PD0..PDn
_MAX_LEN = 255
# 106 kbit/s type A: 8 data bits + 1 parity bit per byte
_BITS_PER_AIR_BYTE = 9
AIR_BITRATE = 106_000


def frame(payload):
    """Wrap `payload` (TFI + command + data) in a normal information frame."""
    n = len(payload)
    if not 1 <= n <= _MAX_LEN:
        raise ValueError("normal frame payload must be 1..255 bytes")
    dcs = (-sum(payload)) & 0xFF
    return bytes((0x00, 0x00, 0xFF, n, (-n) & 0xFF)) + bytes(payload) + bytes((dcs, 0x00))


class RFField:
    """The virtual RF field in front of the antenna: empty or holding one card."""

    def __init__(self):
        self._lock = threading.RLock()
        self._card = None
        self.generation = 0  # bumps on every place/remove so a stale activation is detectable

    @property
    def card(self):
        return self._card

    def place(self, card):
        with self._lock:
            if self._card is not None and self._card is not card:
                self._field_off(self._card)
            self._card = card
            self.generation += 1

    def remove(self):
        """Take the card away: it loses power (`card.field_off()`)."""
        with self._lock:
            card, self._card = self._card, None
            self.generation += 1
            if card is not None:
                self._field_off(card)
        return card

    @staticmethod
    def _field_off(card):
        off = getattr(card, "field_off", None)
        if off is not None:
            off()


class Noise:
    """Fault injection for the wire: drop or flip bytes with the given probabilities (replayable)."""

    def __init__(self, seed=0, drop=0.0, flip=0.0, directions=("rx", "tx")):
        self.rng = random.Random(seed)
        self.drop = drop
        self.flip = flip
        self.directions = directions
        self.dropped = 0
        self.flipped = 0

    def __call__(self, direction, data):
        if direction not in self.directions:
            return data
        out = bytearray()
        for b in data:
            if self.rng.random() < self.drop:
                self.dropped += 1
                continue
            if self.rng.random() < self.flip:
                b ^= 1 << self.rng.randrange(8)
                self.flipped += 1
            out.append(b)
        return bytes(out)


class PN532Emulator:
    """The chip: a frame parser and command set over an `RFField`.

    `handle_bytes(data)` feeds host bytes and returns the chip's bytes (pure: no I/O, no timing);
    `serve()` puts it behind a TCP socket for the firmware. `noise`, when set to a callable
    `(direction, bytes) -> bytes` ("rx" host->chip, "tx" chip->host), corrupts the wire.
    """

    def __init__(self, field=None, noise=None):
        self.field = field if field is not None else RFField()
        self.noise = noise
        self._rx = bytearray()
        self._last_response = b""
        self._target = None  # the activated card (Tg 1), or None
        self._target_gen = -1
        self._rf_on = True
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self._conn = None
        self._closing = False
        self.port = None
        self.commands = {
            CMD_DIAGNOSE: self._diagnose,
            CMD_GET_FIRMWARE_VERSION: self._get_firmware_version,
            CMD_GET_GENERAL_STATUS: self._get_general_status,
            CMD_SAM_CONFIGURATION: self._sam_configuration,
            CMD_RF_CONFIGURATION: self._rf_configuration,
            CMD_IN_LIST_PASSIVE_TARGET: self._in_list_passive_target,
            CMD_IN_DATA_EXCHANGE: self._in_data_exchange,
            CMD_IN_DESELECT: self._in_deselect,
            CMD_IN_RELEASE: self._in_release,
        }
        self.reset_counters()

    # ---- counters (make bench) -------------------------------------------------------------
    def reset_counters(self):
        self.frames_in = 0  # well-formed command frames received
        self.frames_out = 0  # frames sent (ACK, responses, error frames)
        self.bytes_in = 0
        self.bytes_out = 0
        self.bad_frames = 0  # LCS/DCS failures
        self.exchanges = 0  # InDataExchange commands
        self.air_bytes = 0  # modelled bytes on the RF interface (framing included)
        self.last_card_error = None
        self.empty_polls = 0  # InListPassiveTarget answered "no target" (the host saw no card)
        self.aborted = 0  # commands aborted by the host's next frame (served: module doc)

    def air_seconds(self):
        """Modelled air time of all RF traffic so far at 106 kbit/s."""
        return self.air_bytes * _BITS_PER_AIR_BYTE / AIR_BITRATE

    def stats(self):
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "bad_frames": self.bad_frames,
            "exchanges": self.exchanges,
            "air_bytes": self.air_bytes,
            "air_seconds": self.air_seconds(),
            "empty_polls": self.empty_polls,
        }

    # ---- the frame layer -------------------------------------------------------------------
    def handle_bytes(self, data, send=None, more=None):
        """Feed bytes from the host; return every byte the chip sends in reply (maybe b"").
        Served (the UART): `send(bytes)` takes the chip's bytes as they are made (the ACK before
        the command runs; then b"" is returned), and `more()` says whether the host's next bytes
        are on the line (a command is then aborted: module doc)."""
        with self._lock:
            if self.noise is not None:
                data = self.noise("rx", bytes(data))
            self.bytes_in += len(data)
            self._rx += data
            out = bytearray()

            def emit(b):
                if self.noise is not None and b:
                    b = self.noise("tx", b)
                self.bytes_out += len(b)
                if send is None:
                    out.extend(b)
                elif b:
                    send(b)

            while True:
                step = self._parse_one(emit, more)
                if step is None:
                    break
                emit(step)
            return bytes(out)

    def resync(self):
        """Drop a partial frame (the serve loop calls this after the line went idle)."""
        with self._lock:
            self._rx.clear()

    def _parse_one(self, emit, more=None):
        """Consume at most one frame from the buffer; return bytes to send, or None to wait. A
        command's ACK goes to emit() before it runs; with `more` (served), a command is aborted
        when the host's next frame came before it ran or while it ran."""
        rx = self._rx
        i = rx.find(b"\x00\xff")
        if i < 0:
            # keep a trailing 00: it may be the first half of a start code
            del rx[: len(rx) - 1 if rx.endswith(b"\x00") else len(rx)]
            return None
        del rx[:i]
        if len(rx) < 4:
            return None
        n, lcs = rx[2], rx[3]
        if n == 0x00 and lcs == 0xFF:  # ACK from the host: abort (nothing pending here)
            del rx[:4]
            return b""
        if n == 0xFF and lcs == 0x00:  # NACK: send the last response frame again
            del rx[:4]
            if not self._last_response:
                return b""
            self.frames_out += 1
            return self._last_response
        if (n + lcs) & 0xFF or n == 0:  # bad LCS, or extended frame (FF FF): resync
            self.bad_frames += (n, lcs) != (0xFF, 0xFF)
            del rx[:2]
            return b""
        if len(rx) < 4 + n + 1:
            return None
        payload = bytes(rx[4 : 4 + n])
        dcs = rx[4 + n]
        if (sum(payload) + dcs) & 0xFF:
            self.bad_frames += 1
            del rx[:2]
            return b""
        del rx[: 4 + n + 1]
        if rx[:1] == b"\x00":
            del rx[:1]  # postamble
        self.frames_in += 1
        self.frames_out += 1
        emit(ACK)  # at once, as the chip does: before the command runs
        if more is not None and rx.find(b"\x00\xff") >= 0:
            self.aborted += 1  # the host sent its next frame before this one ran: it gave up
            self._last_response = b""
            return b""
        response = self._dispatch(payload)
        if more is not None and response and (rx.find(b"\x00\xff") >= 0 or more()):
            self.aborted += 1  # the host's next bytes came while it ran: it stopped waiting
            response = b""
        self._last_response = response
        self.frames_out += bool(response)
        return response

    def _dispatch(self, payload):
        if len(payload) < 2 or payload[0] != TFI_HOST:
            return ERROR_FRAME
        cmd = payload[1]
        handler = self.commands.get(cmd)
        if handler is None:
            return ERROR_FRAME
        data = handler(payload[2:])
        if data is None:  # the handler found a syntax error
            return ERROR_FRAME
        if data is NO_ANSWER:  # the host stops waiting first (module doc)
            return b""
        return frame(bytes((TFI_CHIP, cmd + 1)) + data)

    # ---- commands --------------------------------------------------------------------------
    def _diagnose(self, p):
        if not p:
            return None
        num = p[0]
        if num == 0x00:  # communication line test: echo NumTst and InParam
            return bytes(p)
        if num in (0x01, 0x02, 0x07):  # ROM, RAM, antenna self-test: all fine
            return bytes((num, 0x00)) if num == 0x07 else b"\x00"
        return None

    def _get_firmware_version(self, p):
        return bytes(FIRMWARE_VERSION)

    def _get_general_status(self, p):
        out = bytearray((0x00, 0x00))  # Err (last error), Field (external field detected)
        if self._target_active():
            out += bytes((1, 1, 0x00, 0x00, 0x00))  # NbTg, Tg, BrRx, BrTx, Type (ISO-A 106)
        else:
            out.append(0)
        out.append(0x00)  # SAM status
        return bytes(out)

    def _sam_configuration(self, p):
        if not p or not 1 <= p[0] <= 4:
            return None
        return b""

    def _rf_configuration(self, p):
        if not p:
            return None
        if p[0] == 0x01 and len(p) >= 2:  # CfgItem RF field: bit 0 = RF on
            self._rf_on = bool(p[1] & 0x01)
            if not self._rf_on:
                self._drop_target(power_off=True)
        return b""

    def _in_list_passive_target(self, p):
        if len(p) < 2 or not 1 <= p[0] <= 2:
            return None
        brty, wanted = p[1], bytes(p[2:])
        card = self.field.card
        if brty != 0x00 or card is None or not self._rf_on:
            self.empty_polls += 1
            return b"\x00"
        if wanted and wanted != bytes(card.uid):
            return b"\x00"
        if self._target is not None:
            self._drop_target(power_off=True)  # re-activation resets the card's session
        uid = bytes(card.uid)
        ats = _ats_with_tl(getattr(card, "ats", b"") or b"") if card.sak & 0x20 else b""
        self._target = card
        self._target_gen = self.field.generation
        self.air_bytes += _activation_air_bytes(len(uid), len(ats))
        return bytes((1, 1)) + bytes(card.atqa) + bytes((card.sak, len(uid))) + uid + ats

    def _in_data_exchange(self, p):
        if not p:
            return None
        tg = p[0] & 0x3F  # bit 6 = MI (host-side chaining): not modelled
        data = bytes(p[1:])
        self.exchanges += 1
        if tg != 1 or self._target is None:
            return bytes((ERR_CONTEXT,))
        if not self._target_active():
            self.air_bytes += len(data) + 3  # the command still goes out; nobody answers
            return bytes((ERR_TIMEOUT,))
        self.air_bytes += len(data) + 3  # PCB + INF + CRC_A
        try:
            resp = self._target.transceive(data)
        except Exception as e:  # noqa: BLE001  a failing card model (tearing, crash) is silence
            log.debug("card transceive failed: %r", e)
            self.last_card_error = e
            return bytes((ERR_TIMEOUT,))
        if resp is NO_ANSWER:
            return NO_ANSWER
        if resp is None or not self._target_active():
            return bytes((ERR_TIMEOUT,))
        resp = bytes(resp)
        self.air_bytes += len(resp) + 3
        if len(resp) > _MAX_LEN - 3:
            return bytes((ERR_BUFFER,))
        return b"\x00" + resp

    def _in_deselect(self, p):
        if not p:
            return None
        if self._target is None or p[0] not in (0, 1):
            return bytes((ERR_CONTEXT,))
        self._drop_target(power_off=True, forget=False)
        return b"\x00"

    def _in_release(self, p):
        if not p:
            return None
        if p[0] not in (0, 1):  # 0 = all targets, 1 = our only one
            return bytes((ERR_CONTEXT,))
        self._drop_target(power_off=True)  # releasing nothing is fine: the firmware is tidy
        return b"\x00"

    def _target_active(self):
        return (
            self._target is not None
            and self.field.card is self._target
            and self.field.generation == self._target_gen
            and self._rf_on
        )

    def _drop_target(self, power_off, forget=True):
        card = self._target
        if card is not None and power_off and self.field.card is card:
            off = getattr(card, "field_off", None)
            if off is not None:
                off()
        if forget:
            self._target = None

    # ---- the "UART": a TCP server, one connection at a time ---------------------------------
    def serve(self, host="127.0.0.1", port=0, idle_resync=0.1):
        """Start serving on a thread; returns self (see `.port`)."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, port))
        srv.listen(1)
        srv.settimeout(0.2)
        self._server = srv
        self.port = srv.getsockname()[1]
        self._closing = False
        self._thread = threading.Thread(
            target=self._serve_loop, args=(idle_resync,), name="pn532-emu", daemon=True
        )
        self._thread.start()
        return self

    def _serve_loop(self, idle_resync):
        while not self._closing:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._conn = conn
            self.resync()
            try:
                self._serve_conn(conn, idle_resync)
            finally:
                self._conn = None
                try:
                    conn.close()
                except OSError:
                    pass

    def _serve_conn(self, conn, idle_resync):
        conn.settimeout(idle_resync)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while not self._closing:
            try:
                data = conn.recv(4096)
            except TimeoutError:
                if self._rx:  # a partial frame went stale: the chip's HSU times out too
                    self.resync()
                continue
            except OSError:
                return
            if not data:
                return
            try:
                self.handle_bytes(data, conn.sendall, lambda: _readable(conn))
            except OSError:
                return

    def close(self):
        self._closing = True
        for s in (self._conn, self._server):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._server = self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _readable(conn):
    """Bytes from the host wait on the connection (or it closed)."""
    return bool(select.select([conn], [], [], 0)[0])


def _ats_with_tl(ats):
    """The ATS as the PN532 reports it: starting with its length byte TL."""
    ats = bytes(ats)
    if ats and ats[0] == len(ats):
        return ats
    return bytes((len(ats) + 1,)) + ats


def _activation_air_bytes(uid_len, ats_len):
    """Bytes on air for REQA, anticollision + select per cascade level, RATS/ATS."""
    levels = {4: 1, 7: 2, 10: 3}.get(uid_len, 1)
    n = 1 + 2  # REQA, ATQA
    n += levels * ((2 + 5) + (2 + 5 + 2) + (1 + 2))  # ANTICOLLISION+UID, SELECT, SAK+CRC
    if ats_len:
        n += (2 + 2) + (ats_len + 2)  # RATS + CRC, ATS + CRC
    return n


def wait_until(predicate, timeout=2.0, interval=0.005):
    """Small helper for tests and the virtual board: poll `predicate` until true or timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
