"""PN532 reader chip driver over HSU (UART), for the tap path.

The chip speaks normal information frames (NXP UM0701-02, 6.2):

    host -> chip   00 00 FF LEN LCS D4 CMD data DCS 00
    chip -> host   00 00 FF 00 FF 00                         ACK, then later
                   00 00 FF LEN LCS D5 CMD+1 data DCS 00     the response
                   00 00 FF 01 FF 7F 81 00                   error frame (syntax error)

    from firmware.pn532 import PN532, CardGone
    chip = PN532(uart)                 # machine.UART(2, 115200, ...) or SocketUART(host, port)
    chip.wakeup()                      # HSU wake-up preamble + SAMConfiguration
    uid = chip.list_target(100)        # None when the field is empty
    resp = chip.exchange(b"\\x90\\x60\\x00\\x00\\x00")   # raises CardGone when the card left

`uart` needs `write(buf)`, `any()` and `readinto(buf, n)` (or `read(n)`), like machine.UART.
Every wait is bounded by a deadline; garbage on the line is skipped up to the next start code; a
response with a bad checksum is asked for again with a NACK. The exchange path reuses two
preallocated frame buffers.
"""

from time import sleep_ms, ticks_add, ticks_diff, ticks_ms  # MicroPython only (board, unix port)

from card_schema.compat import const


class ReaderError(Exception):
    """The reader chip or its bus misbehaved (no ACK, bad frames, error status).

    args: (message, code) where code is the PN532 status/error code or -1.
    """


class CardGone(ReaderError):
    """The card left the field (timeout, no target): not a fault of the reader."""


_TFI_HOST = const(0xD4)
_TFI_CHIP = const(0xD5)
_MAX_DATA = const(252)  # LEN is one byte: TFI + CMD + Tg + 252 data bytes = 255
_BUF = const(264)  # 00 00 FF LEN LCS + 255 + DCS 00, rounded
_CHUNK = const(32)
_ACK_TIMEOUT_MS = const(100)  # the manual says 15 ms; leave room for a busy host / emulator
_RETRIES = const(3)
_MAX_POLLS = const(100000)  # backstop for every wait loop on top of its deadline

# status codes (low 6 bits of the status byte) that mean "the card is not there any more"
_ST_TIMEOUT = const(0x01)
_ST_CONTEXT = const(0x27)  # no activated target (released / never listed)
_ST_RELEASED = const(0x29)  # target released by the initiator
_ST_DISAPPEARED = const(0x2B)  # card previously activated has disappeared

# frame kinds returned by _read_frame
_K_ACK = const(1)
_K_NACK = const(2)
_K_DATA = const(3)
_K_ERROR = const(4)
_K_BAD = const(5)  # checksum failure


class PN532:
    # commands (UM0701-02 chapter 7)
    DIAGNOSE = 0x00
    GET_FIRMWARE_VERSION = 0x02
    GET_GENERAL_STATUS = 0x04
    SAM_CONFIGURATION = 0x14
    RF_CONFIGURATION = 0x32
    IN_DATA_EXCHANGE = 0x40
    IN_DESELECT = 0x44
    IN_LIST_PASSIVE_TARGET = 0x4A
    IN_RELEASE = 0x52
    # InReleaseTarget = 0x52, InSelect = 0x54, InAutoPoll = 0x60: unused here

    ACK = b"\x00\x00\xff\x00\xff\x00"
    NACK = b"\x00\x00\xff\xff\x00\x00"
    # HSU wake-up from LowVbat/PowerDown: a long preamble of 0x55 then zeros (UM0701-02 7.2.11)
    WAKEUP = b"\x55\x55\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

    def __init__(self, uart, timeout_ms=500, ack_timeout_ms=_ACK_TIMEOUT_MS, retries=_RETRIES):
        self._uart = uart
        self.timeout_ms = timeout_ms
        self.ack_timeout_ms = ack_timeout_ms
        self.retries = retries
        self._tx = bytearray(_BUF)
        self._rx = bytearray(_BUF)
        self._txmv = memoryview(self._tx)
        self._rxmv = memoryview(self._rx)
        self._chunk = bytearray(_CHUNK)
        self._views = {}  # length -> memoryview of _tx, so writes allocate nothing after warm-up
        self._rviews = {}  # length -> memoryview of an InDataExchange answer in _rx
        self._readinto = getattr(uart, "readinto", None)
        self._rlen = 0  # LEN of the last frame read (TFI included)
        self.uid = None
        self.atqa = None
        self.sak = None
        self.ats = None
        self.exchanges = 0
        self.nacks = 0  # responses asked for again
        self.resends = 0  # commands sent again for lack of an ACK

    # ---- public API ------------------------------------------------------------------------
    def wakeup(self):
        """Wake the chip (HSU) and put it in normal mode; the first command must be SAMConfig."""
        self._uart.write(self.WAKEUP)
        self.sam_configure()
        # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation: do not let InListPassiveTarget retry
        # forever (the default 0xFF) when no card is there; list_target polls instead.
        self._call(self.RF_CONFIGURATION, b"\x05\xff\x01\x02")

    def firmware_version(self):
        """(IC, Ver, Rev, Support); a PN532 v1.6 says (0x32, 1, 6, 7)."""
        n = self._call(self.GET_FIRMWARE_VERSION)
        if n < 4:
            raise ReaderError("short GetFirmwareVersion response", -1)
        rx = self._rx
        return (rx[7], rx[8], rx[9], rx[10])

    def sam_configure(self, mode=1, timeout=0x14, irq=1):
        """SAMConfiguration: mode 1 = normal (no SAM)."""
        self._tx[7] = mode
        self._tx[8] = timeout
        self._tx[9] = irq
        self._call(self.SAM_CONFIGURATION, None, 3)

    def general_status(self):
        """GetGeneralStatus -> (err, field, nb_targets)."""
        n = self._call(self.GET_GENERAL_STATUS)
        if n < 3:
            raise ReaderError("short GetGeneralStatus response", -1)
        return (self._rx[7], self._rx[8], self._rx[9])

    def list_target(self, timeout_ms=100):
        """InListPassiveTarget, one ISO 14443-A target at 106 kbps -> UID bytes or None.

        Stores `uid`, `atqa` (SENS_RES as the chip reports it, e.g. 03 44), `sak` and `ats`
        (starting with TL; b"" for a card that is not ISO 14443-4).
        """
        self.uid = None
        n = self._call(self.IN_LIST_PASSIVE_TARGET, b"\x01\x00", timeout_ms=timeout_ms)
        if n < 0:
            # still searching when our time is up: abort the command with an ACK (6.2.1.3)
            self._uart.write(self.ACK)
            return None
        rx = self._rx
        if n < 1 or rx[7] == 0:
            return None
        # NbTg, Tg, SENS_RES(2), SEL_RES, NFCIDLength, NFCID, [ATS]
        if n < 7:
            raise ReaderError("short InListPassiveTarget response", -1)
        uid_len = rx[12]
        end = 13 + uid_len
        if end > 7 + n:
            raise ReaderError("bad NFCID length", -1)
        self.atqa = bytes(rx[9:11])
        self.sak = rx[11]
        self.uid = bytes(rx[13:end])
        self.ats = bytes(rx[end : 7 + n]) if self.sak & 0x20 else b""
        return self.uid

    def exchange(self, data, timeout_ms=None, copy=True):
        """InDataExchange with target 1: send one ISO-DEP frame, return the card's answer.

        Returns bytes, or with copy=False a memoryview into the driver's buffer that is valid
        until the next command (no allocation but the view). Raises CardGone when the card left
        the field or no target is active, ReaderError for any other status.
        """
        n = len(data)
        if n > _MAX_DATA:
            raise ValueError("exchange data too long")
        self._tx[7] = 1  # Tg
        self._tx[8 : 8 + n] = data
        self.exchanges += 1
        r = self._call(self.IN_DATA_EXCHANGE, None, n + 1, timeout_ms)
        if r < 1:
            raise ReaderError("empty InDataExchange response", -1)
        status = self._rx[7] & 0x3F  # bit 6 MI, bit 7 NAD
        if status:
            self._status_error(status)
        if copy:
            return bytes(self._rxmv[8 : 7 + r])
        v = self._rviews.get(r)
        if v is None:  # one view per answer length, made once
            v = self._rxmv[8 : 7 + r]
            self._rviews[r] = v
        return v

    def release(self):
        """InRelease all targets (the card is powered down / halted)."""
        self.uid = None
        self._call(self.IN_RELEASE, b"\x00")

    def deselect(self):
        self._call(self.IN_DESELECT, b"\x00")

    def self_test(self, pattern=b"tapkit-pn532-line-test"):
        """Diagnose: communication line test (the chip echoes the data). True or ReaderError."""
        k = len(pattern)
        self._tx[7] = 0x00  # NumTst 0: communication line test
        self._tx[8 : 8 + k] = pattern
        n = self._call(self.DIAGNOSE, None, k + 1)
        if n != k + 1 or self._rx[7] != 0x00 or bytes(self._rx[8 : 8 + k]) != pattern:
            raise ReaderError("line test failed: echo differs", -1)
        return True

    # ---- frame layer -----------------------------------------------------------------------
    def _status_error(self, status):
        if status in (_ST_TIMEOUT, _ST_CONTEXT, _ST_RELEASED, _ST_DISAPPEARED):
            raise CardGone(f"card left the field (PN532 status 0x{status:02x})", status)
        raise ReaderError(f"PN532 error status 0x{status:02x}", status)

    def _call(self, cmd, params=None, n=-1, timeout_ms=None):
        """Send a command (params copied to _tx[7:], or n bytes already there); wait for the
        response; return its data length (bytes after D5 CMD+1, found at _rx[7:]), or -1 when
        InListPassiveTarget is still searching at the timeout."""
        if params is not None:
            n = len(params)
            self._tx[7 : 7 + n] = params
        elif n < 0:
            n = 0
        out = self._frame(cmd, n)
        if timeout_ms is None:
            timeout_ms = self.timeout_ms
        for _ in range(self.retries):
            self._drain()
            self._uart.write(out)
            kind = self._read_frame(self.ack_timeout_ms)
            if kind == _K_ACK:
                break
            if kind == _K_DATA or kind == _K_ERROR:
                # the ACK was lost on the line but the chip answered: take the answer
                return self._check_response(cmd, kind)
            self.resends += 1
        else:
            raise ReaderError("no ACK from the PN532 (check wiring and baud rate)", -1)
        for _ in range(self.retries):
            kind = self._read_frame(timeout_ms)
            if kind == _K_DATA or kind == _K_ERROR:
                return self._check_response(cmd, kind)
            if kind == _K_BAD:
                self.nacks += 1
                self._uart.write(self.NACK)  # ask the chip to send its response again
                continue
            if kind == 0:
                if cmd == self.IN_LIST_PASSIVE_TARGET:
                    return -1  # still searching: not an error
                raise ReaderError(f"no response from the PN532 in {timeout_ms} ms", -1)
        raise ReaderError("no valid response from the PN532", -1)

    def _check_response(self, cmd, kind):
        if kind == _K_ERROR:
            raise ReaderError(f"PN532 syntax error frame (command 0x{cmd:02x})", 0x7F)
        rx = self._rx
        if self._rlen < 2 or rx[5] != _TFI_CHIP or rx[6] != cmd + 1:
            raise ReaderError(f"unexpected PN532 response to 0x{cmd:02x}", -1)
        return self._rlen - 2

    def _frame(self, cmd, n):
        """Complete the frame around _tx[7:7+n]; return a view of exactly the frame."""
        tx = self._tx
        ln = n + 2
        tx[0] = 0x00
        tx[1] = 0x00
        tx[2] = 0xFF
        tx[3] = ln
        tx[4] = (0x100 - ln) & 0xFF
        tx[5] = _TFI_HOST
        tx[6] = cmd
        s = _TFI_HOST + cmd
        for i in range(7, 7 + n):
            s += tx[i]
        tx[7 + n] = (0x100 - (s & 0xFF)) & 0xFF
        tx[8 + n] = 0x00
        total = 9 + n
        v = self._views.get(total)
        if v is None:
            v = self._txmv[:total]
            self._views[total] = v
        return v

    def _drain(self):
        """Throw away stale bytes (a late answer to an earlier try, noise)."""
        for _ in range(_BUF):
            if not self._uart.any():
                return
            self._read_some(0, _CHUNK)

    def _read_some(self, off, want):
        """Read up to `want` bytes that are waiting into _rx[off:]; return the count."""
        k = min(_CHUNK, want)
        if self._readinto is not None:
            got = self._readinto(self._chunk, k)
            if not got:
                return 0
            chunk = self._chunk
        else:
            chunk = self._uart.read(k)
            if not chunk:
                return 0
            got = len(chunk)
        rx = self._rx
        for i in range(got):
            rx[off + i] = chunk[i]
        return got

    def _read_exact(self, off, n, deadline):
        """Fill _rx[off:off+n] before `deadline` (ticks_ms); False on timeout."""
        end = off + n
        for _ in range(_MAX_POLLS):
            if off >= end:
                return True
            if self._uart.any():
                off += self._read_some(off, end - off)
            elif ticks_diff(ticks_ms(), deadline) >= 0:
                return False
            else:
                sleep_ms(1)
        return False

    def _read_frame(self, timeout_ms):
        """Read the next frame into _rx (header at 0..4, payload from 5). Return its kind,
        or 0 on timeout. Bytes before a start code are skipped; so is a frame whose LCS fails."""
        deadline = ticks_add(ticks_ms(), timeout_ms)
        rx = self._rx
        prev = -1
        for _ in range(_MAX_POLLS):
            # hunt for the start code 00 FF one byte at a time
            if not self._read_exact(0, 1, deadline):
                return 0
            b = rx[0]
            if not (prev == 0x00 and b == 0xFF):
                prev = b
                continue
            prev = -1
            if not self._read_exact(3, 2, deadline):
                return 0
            ln = rx[3]
            lcs = rx[4]
            if ln == 0x00 and lcs == 0xFF:
                return _K_ACK
            if ln == 0xFF and lcs == 0x00:
                return _K_NACK
            if (ln + lcs) & 0xFF or ln == 0:
                continue  # noise that looked like a start code: keep hunting
            # payload + DCS (the postamble is skipped as noise by the next hunt)
            if not self._read_exact(5, ln + 1, deadline):
                return 0
            s = 0
            for i in range(5, 6 + ln):
                s += rx[i]
            if s & 0xFF:
                return _K_BAD
            self._rlen = ln
            if ln == 1 and rx[5] == 0x7F:
                return _K_ERROR
            return _K_DATA
        return 0
