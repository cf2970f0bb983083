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

`uart` needs `write(buf)`, `any()` and `readinto(buf, n)`, like machine.UART. Every wait is bounded
by a deadline; garbage on the line is skipped up to the next start code; a response with a bad
checksum is asked for again with a NACK. The exchange path reuses preallocated frame buffers.

RAM: this module is imported on a 112 KB heap, so the chip's command codes, frames and limits are
`const` (folded by mpy-cross, no RAM) and the driver is a handful of methods: everything about
framing, ACK/NACK and retries lives in `_call`.
"""

from time import sleep_ms, ticks_add, ticks_diff, ticks_ms  # MicroPython only (board, unix port)

from micropython import const


class ReaderError(Exception):
    """The reader chip or its bus misbehaved (no ACK, bad frames, error status).

    args: (message, code) where code is the PN532 status/error code or -1.
    """


class CardGone(ReaderError):
    """The card left the field (timeout, no target): not a fault of the reader."""


# commands (UM0701-02 chapter 7); unused here: GetGeneralStatus 0x04, InDeselect 0x44,
# InSelect 0x54, InAutoPoll 0x60
_DIAGNOSE = const(0x00)
_GET_FIRMWARE_VERSION = const(0x02)
_SAM_CONFIGURATION = const(0x14)
_RF_CONFIGURATION = const(0x32)
_IN_DATA_EXCHANGE = const(0x40)
_IN_LIST_PASSIVE_TARGET = const(0x4A)
_IN_RELEASE = const(0x52)

_TFI_HOST = const(0xD4)
_TFI_CHIP = const(0xD5)
_ACK = const(b"\x00\x00\xff\x00\xff\x00")
_NACK = const(b"\x00\x00\xff\xff\x00\x00")
# HSU wake-up from LowVbat/PowerDown: a long preamble of 0x55 then zeros (UM0701-02 7.2.11)
_WAKEUP = const(b"\x55\x55\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")
# Diagnose NumTst 0 (communication line test) + pattern; the answer is Status 00 + the pattern,
# i.e. the same bytes
_LINE_TEST = const(b"\x00tapkit-pn532-line-test")
# status codes (low 6 bits of the status byte) that mean "the card is not there any more":
# 01 timeout, 27 no activated target (released / never listed), 29 released by the initiator,
# 2B the activated card has disappeared
_GONE = const(b"\x01\x27\x29\x2b")

_MAX_DATA = const(252)  # LEN is one byte: TFI + CMD + Tg + 252 data bytes = 255
_BUF = const(264)  # 00 00 FF LEN LCS + 255 + DCS 00, rounded
_CHUNK = const(32)
_ACK_TIMEOUT_MS = const(100)  # the manual says 15 ms; leave room for a busy host / emulator
_RETRIES = const(3)
_MAX_POLLS = const(100000)  # backstop for every wait loop on top of its deadline

# _read_frame results besides LEN (> 0)
_F_TIMEOUT = const(0)
_F_ACK = const(-1)
_F_BAD = const(-2)  # a NACK, or a frame whose checksum fails


class PN532:
    def __init__(self, uart, timeout_ms=500):
        self._uart = uart
        self.timeout_ms = timeout_ms
        # _tx[0:7] = 00 00 FF LEN LCS D4 CMD: only LEN, LCS and CMD change (in _call)
        self._tx = bytearray(_BUF)
        self._tx[2] = 0xFF
        self._tx[5] = _TFI_HOST
        self._rx = bytearray(_BUF)
        self._chunk = bytearray(_CHUNK)
        # memoryviews of _tx (key: frame length) and of exchange answers in _rx (key: -length),
        # made once each, so the exchange path allocates nothing after warm-up
        self._views = {}

    def wakeup(self):
        """Wake the chip (HSU) and put it in normal mode; the first command must be SAMConfig."""
        self._uart.write(_WAKEUP)
        self.sam_configure()
        # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation: do not let InListPassiveTarget retry
        # forever (the default 0xFF) when no card is there; list_target polls instead.
        self._call(_RF_CONFIGURATION, b"\x05\xff\x01\x02")

    def sam_configure(self):
        """SAMConfiguration: mode 1 = normal (no SAM), timeout 0x14 (1 s), use IRQ."""
        self._call(_SAM_CONFIGURATION, b"\x01\x14\x01")

    def firmware_version(self):
        """(IC, Ver, Rev, Support); a PN532 v1.6 says (0x32, 1, 6, 7)."""
        self._call(_GET_FIRMWARE_VERSION, b"", 4)
        return tuple(self._rx[7:11])

    def self_test(self):
        """Diagnose: communication line test (the chip echoes the data). True or ReaderError."""
        if self._rx[7 : 7 + self._call(_DIAGNOSE, _LINE_TEST)] != _LINE_TEST:
            raise ReaderError("line test failed", -1)
        return True

    def list_target(self, timeout_ms=100):
        """InListPassiveTarget, one ISO 14443-A target at 106 kbps -> UID bytes or None."""
        n = self._call(_IN_LIST_PASSIVE_TARGET, b"\x01\x00", 1, timeout_ms)
        if n < 0:
            # still searching when our time is up: abort the command with an ACK (6.2.1.3)
            self._uart.write(_ACK)
            return None
        rx = self._rx
        if not rx[7]:
            return None
        # NbTg, Tg, SENS_RES(2), SEL_RES, NFCIDLength, NFCID, [ATS]
        end = 13 + rx[12]
        if n < 7 or end > 7 + n:
            raise ReaderError("bad PN532 response", -1)
        return bytes(rx[13:end])

    def exchange(self, data, copy=True):
        """InDataExchange with target 1: send one ISO-DEP frame, return the card's answer.

        Returns bytes, or with copy=False a memoryview into the driver's buffer that is valid
        until the next command (allocates nothing after the first answer of that length).
        Raises CardGone when the card left the field or no target is active, ReaderError for
        any other status.
        """
        n = len(data)
        if n > _MAX_DATA:
            raise ValueError("too long")
        tx = self._tx
        tx[7] = 1  # Tg
        tx[8 : 8 + n] = data
        r = self._call(_IN_DATA_EXCHANGE, None, 1, n=n + 1)
        status = self._rx[7] & 0x3F  # bit 6 MI, bit 7 NAD
        if status:
            raise (CardGone if status in _GONE else ReaderError)("PN532 status", status)
        v = self._views.get(-r)
        if v is None:  # one view per answer length, made once
            v = self._views[-r] = memoryview(self._rx)[8 : 7 + r]
        return bytes(v) if copy else v

    def release(self):
        """InRelease all targets (the card is powered down / halted)."""
        self._call(_IN_RELEASE, b"\x00")

    def _call(self, cmd, params, need=0, timeout_ms=0, n=0):
        """Send a command (params copied to _tx[7:], or with params=None n bytes already there),
        wait for its ACK and response; return the response's data length (bytes after D5 CMD+1,
        at _rx[7:], at least `need`), or -1 when InListPassiveTarget is still searching at the
        timeout (timeout_ms, 0 for the driver's)."""
        uart = self._uart
        tx = self._tx
        if params is not None:
            n = len(params)
            tx[7 : 7 + n] = params
        ln = n + 2
        tx[3] = ln
        tx[4] = -ln & 0xFF
        tx[6] = cmd
        s = 0
        for i in range(5, 7 + n):
            s -= tx[i]
        tx[7 + n] = s & 0xFF
        tx[8 + n] = 0x00
        out = self._views.get(ln)
        if out is None:
            out = self._views[ln] = memoryview(tx)[: n + 9]
        for _ in range(_RETRIES):
            # throw away stale bytes (a late answer to an earlier try, noise)
            for _ in range(_BUF):
                if not uart.any():
                    break
                uart.readinto(self._chunk, 1)
            uart.write(out)
            ln = self._read_frame(_ACK_TIMEOUT_MS)
            if ln > 0 or ln == _F_ACK:  # a response without ACK: the ACK was lost on the line
                break
        else:
            raise ReaderError("no ACK from the PN532", -1)
        for _ in range(_RETRIES):
            if ln > 0:
                break
            ln = self._read_frame(timeout_ms or self.timeout_ms)
            if ln == _F_TIMEOUT:
                if cmd == _IN_LIST_PASSIVE_TARGET:
                    return -1  # still searching: not an error
                raise ReaderError("PN532 timeout", -1)
            if ln == _F_BAD:
                uart.write(_NACK)  # ask the chip to send its response again
        rx = self._rx
        # an error frame (syntax error) is LEN 1, 7F: its code is 0x7F
        if ln < 2 + need or rx[5] != _TFI_CHIP or rx[6] != cmd + 1:
            raise ReaderError("bad PN532 response", rx[5] if ln == 1 else -1)
        return ln - 2

    def _read_frame(self, timeout_ms):
        """Read the next frame into _rx (LEN at 3, payload from 5). Return its LEN, or _F_ACK,
        _F_BAD, _F_TIMEOUT. Bytes before a start code are skipped; so is a frame whose LCS fails
        (the postamble is skipped as noise by the next hunt)."""
        deadline = ticks_add(ticks_ms(), timeout_ms)
        uart = self._uart
        chunk = self._chunk
        rx = self._rx
        prev = 1
        pos = 0  # bytes read into _rx[pos:end]: rx[0] while hunting, then header, then payload
        end = 1
        for _ in range(_MAX_POLLS):
            if pos < end:
                if uart.any():
                    k = uart.readinto(chunk, min(_CHUNK, end - pos)) or 0
                    for i in range(k):
                        rx[pos + i] = chunk[i]
                    pos += k
                elif ticks_diff(ticks_ms(), deadline) >= 0:
                    break
                else:
                    sleep_ms(1)
                continue
            if end == 1:  # hunting for the start code 00 FF one byte at a time
                b = rx[0]
                pos = 0
                if prev or b != 0xFF:
                    prev = b
                else:
                    prev = 1
                    pos = 3
                    end = 5
                continue
            ln = rx[3]
            lcs = rx[4]
            if end == 5:
                if not ln and lcs == 0xFF:
                    return _F_ACK
                if ln == 0xFF and not lcs:
                    return _F_BAD  # NACK
                if (ln + lcs) & 0xFF or not ln:
                    pos = 0  # noise that looked like a start code: keep hunting
                    end = 1
                else:
                    end = 6 + ln  # payload + DCS
                continue
            s = 0
            for i in range(5, end):
                s += rx[i]
            return _F_BAD if s & 0xFF else ln
        return _F_TIMEOUT
