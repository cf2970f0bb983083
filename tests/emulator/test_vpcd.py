"""pyscard -> real pcscd -> vsmartcard vpcd driver -> emulator.vpcd bridge -> a fake card."""

import os
import time

import pytest

from emulator.pcscd import PCSCUnavailable, ensure_pcscd, missing_packages, wait_reader
from emulator.vpcd import VPCDBridge, atr_from_ats

pytestmark = pytest.mark.pcsc

READER = "Virtual PCD 00 00"  # vpcd slot 0: TCP 35963


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


class FakeCard:
    """Answers SELECT with 90 00 and anything else with its name + 91 00."""

    ats = hx("06 75 77 81 02 80")  # DESFire EV1

    def __init__(self, name=b"A"):
        self.name = name
        self.apdus = []
        self.powered_off = 0

    def transceive(self, apdu):
        self.apdus.append(bytes(apdu))
        if apdu[:2] == hx("00 A4"):
            return hx("90 00")
        return self.name + hx("91 00")

    def field_off(self):
        self.powered_off += 1


@pytest.fixture(scope="module")
def pcscd():
    missing = missing_packages()
    if missing and os.geteuid() != 0:
        pytest.skip("{} not installed and not root".format(", ".join(missing)))
    try:
        ensure_pcscd()
        return wait_reader("Virtual PCD", timeout=15)
    except PCSCUnavailable as e:
        pytest.fail(str(e))


def connect(reader_name, timeout=10.0):
    """pyscard connection to the named reader, waiting until a card is seen there."""
    from smartcard.Exceptions import CardConnectionException, NoCardException
    from smartcard.System import readers

    end = time.monotonic() + timeout
    while True:
        reader = next(r for r in readers() if str(r) == reader_name)
        conn = reader.createConnection()
        try:
            conn.connect()
            return conn
        except (NoCardException, CardConnectionException):
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def card_absent(reader_name, timeout=10.0):
    from smartcard.Exceptions import CardConnectionException, NoCardException
    from smartcard.System import readers

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        conn = next(r for r in readers() if str(r) == reader_name).createConnection()
        try:
            conn.connect()
            conn.disconnect()
        except (NoCardException, CardConnectionException):
            return True
        time.sleep(0.1)
    return False


def test_atr_from_ats_is_pcsc_part3():
    assert atr_from_ats(hx("06 75 77 81 02 80")) == hx("3B 81 80 01 80 80")


def test_pyscard_reads_atr_and_transmits(pcscd):
    assert pcscd == READER
    card = FakeCard()
    with VPCDBridge(card).serve_in_thread() as bridge:
        conn = connect(READER)
        try:
            assert bytes(conn.getATR()) == hx("3B 81 80 01 80 80")
            data, sw1, sw2 = conn.transmit(list(hx("00 A4 04 00 03 54 4B 01 00")))
            assert (data, sw1, sw2) == ([], 0x90, 0x00)
            data, sw1, sw2 = conn.transmit(list(hx("90 60 00 00 00")))  # DESFire GetVersion
            assert (bytes(data), sw1, sw2) == (b"A", 0x91, 0x00)
        finally:
            conn.disconnect()
        assert card.apdus[-2:] == [hx("00 A4 04 00 03 54 4B 01 00"), hx("90 60 00 00 00")]
        assert bridge.apdus >= 2


def test_remove_and_swap_card(pcscd):
    first, second = FakeCard(b"A"), FakeCard(b"B")
    with VPCDBridge(first).serve_in_thread() as bridge:
        conn = connect(READER)
        conn.disconnect()
        bridge.remove()
        assert card_absent(READER), "pcscd still sees a card after remove()"
        assert first.powered_off >= 1
        bridge.swap(second)
        conn = connect(READER)
        try:
            data, sw1, sw2 = conn.transmit(list(hx("90 60 00 00 00")))
            assert (bytes(data), sw1, sw2) == (b"B", 0x91, 0x00)
        finally:
            conn.disconnect()


def test_only_bytes_0_to_4_are_vpcd_control():
    card = FakeCard()
    bridge = VPCDBridge(card)
    assert bridge._handle(card, b"\x04") == hx("3B 81 80 01 80 80")  # get ATR
    assert bridge._handle(card, b"\x01") is None and card.apdus == []  # power on: no reply
    assert bridge._handle(card, b"\x60") == b"A" + hx("91 00")  # a one-byte APDU
    assert card.apdus == [b"\x60"]


def test_native_one_byte_desfire_commands_through_pcscd(pcscd, tmp_path):
    """A native DESFire client (GetVersion 60, its continuation AF, GetApplicationIDs 6A: one byte
    each) through pyscard and real pcscd gets the card's answers; vpcd's control codes are 0..4."""
    from emulator.card import DESFireCard

    card = DESFireCard.blank()
    with VPCDBridge(card).serve_in_thread():
        conn = connect(READER)
        try:
            from smartcard import scard

            raw = getattr(conn, "component", conn)  # under pyscard's connection decorator

            def native(*frame):  # SCardTransmit itself: a native answer may be one byte long
                hresult, resp = scard.SCardTransmit(raw.hcard, raw.getProtocol(), list(frame))
                assert hresult == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(hresult)
                return bytes(resp)

            part1 = native(0x60)  # GetVersion: AF (more), then hardware vendor/type/version
            part2 = native(0xAF)  # software version
            part3 = native(0xAF)  # UID, batch, production week and year; status 00
            aids = native(0x6A)  # GetApplicationIDs of a blank card: none, status 00
        finally:
            conn.disconnect()
    assert part1[0] == 0xAF and part1[1:3] == hx("04 01") and len(part1) == 8
    assert part2[0] == 0xAF and len(part2) == 8
    assert part3[0] == 0x00 and part3[1:8] == card.uid and len(part3) == 15
    assert aids == hx("00")
