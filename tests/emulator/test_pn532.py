"""The PN532 emulator at the frame level: exact transcripts host <-> chip (UM0701-02 frames)."""

import socket

import pytest

from emulator.pn532 import ACK, ERROR_FRAME, NACK, Noise, PN532Emulator, RFField, frame


def hx(s):
    return bytes.fromhex(s.replace(" ", ""))


class FakeCard:
    """A DESFire EV1 look-alike: answers 90 60 (GetVersion) with 91 AF, echoes anything else."""

    uid = hx("04 11 22 33 44 55 66")
    atqa = hx("03 44")
    sak = 0x20
    ats = hx("06 75 77 81 02 80")

    def __init__(self):
        self.frames = []
        self.powered_off = 0

    def transceive(self, apdu):
        self.frames.append(bytes(apdu))
        if apdu[:2] == hx("90 60"):
            return hx("04 01 01 01 00 1A 05 91 AF")
        return bytes(apdu) + hx("90 00")

    def field_off(self):
        self.powered_off += 1


@pytest.fixture
def field():
    return RFField()


@pytest.fixture
def chip(field):
    return PN532Emulator(field)


def talk(chip, transcript):
    """transcript: [(host hex, chip hex), ...]; assert every reply byte for byte."""
    for host, expected in transcript:
        got = chip.handle_bytes(hx(host))
        assert got.hex(" ") == hx(expected).hex(" "), host


def test_frame_helper_matches_the_manual():
    assert frame(hx("D4 02")) == hx("00 00 FF 02 FE D4 02 2A 00")  # GetFirmwareVersion
    assert ACK == hx("00 00 FF 00 FF 00")
    assert NACK == hx("00 00 FF FF 00 00")
    assert ERROR_FRAME == hx("00 00 FF 01 FF 7F 81 00")


def test_wakeup_firmware_version_sam_configuration(chip):
    talk(
        chip,
        [
            (
                (
                    "55 55 00 00 00 00 00 00 00 00 00 00 00 00 00 00"  # HSU wake-up preamble
                    " 00 00 FF 05 FB D4 14 01 14 01 02 00"
                ),  # SAMConfiguration normal mode
                (
                    "00 00 FF 00 FF 00"  # ACK
                    " 00 00 FF 02 FE D5 15 16 00"
                ),  # SAMConfiguration response
            ),
            (
                "00 00 FF 02 FE D4 02 2A 00",  # GetFirmwareVersion
                (
                    "00 00 FF 00 FF 00"  # ACK
                    " 00 00 FF 06 FA D5 03 32 01 06 07 E8 00"
                ),  # IC 32, Ver 1, Rev 6, Support 7
            ),
            (
                "00 00 FF 06 FA D4 32 05 FF 01 02 F3 00",  # RFConfiguration MaxRetries
                "00 00 FF 00 FF 00 00 00 FF 02 FE D5 33 F8 00",  # ACK, response
            ),
        ],
    )


def test_list_target_field_empty_then_card(chip, field):
    talk(
        chip,
        [
            (
                "00 00 FF 04 FC D4 4A 01 00 E1 00",  # InListPassiveTarget 1 target 106A
                (
                    "00 00 FF 00 FF 00"  # ACK
                    " 00 00 FF 03 FD D5 4B 00 E0 00"
                ),  # NbTg 0: the field is empty
            ),
        ],
    )
    field.place(FakeCard())
    talk(
        chip,
        [
            (
                "00 00 FF 04 FC D4 4A 01 00 E1 00",  # InListPassiveTarget 1 target 106A
                (
                    "00 00 FF 00 FF 00"  # ACK
                    " 00 00 FF 15 EB D5 4B 01 01"  # NbTg 1, Tg 1
                    " 03 44 20"  # SENS_RES 03 44 (MSB first, as the PN532 reports), SEL_RES 20
                    " 07 04 11 22 33 44 55 66"  # NFCIDLength 7, NFCID
                    " 06 75 77 81 02 80"  # ATS (TL first)
                    " 12 00"
                ),  # DCS, postamble
            ),
        ],
    )


def test_in_data_exchange_and_release(chip, field):
    card = FakeCard()
    field.place(card)
    chip.handle_bytes(hx("00 00 FF 04 FC D4 4A 01 00 E1 00"))
    talk(
        chip,
        [
            (
                "00 00 FF 08 F8 D4 40 01 90 60 00 00 00 FB 00",  # InDataExchange Tg1 GetVersion
                (
                    "00 00 FF 00 FF 00"  # ACK
                    " 00 00 FF 0C F4 D5 41 00 04 01 01 01 00 1A 05 91 AF 84 00"
                ),  # status 0, answer
            ),
            (
                "00 00 FF 03 FD D4 52 00 DA 00",  # InRelease all
                "00 00 FF 00 FF 00 00 00 FF 03 FD D5 53 00 D8 00",  # ACK, status 0
            ),
            (
                "00 00 FF 05 FB D4 40 01 AA BB 86 00",  # InDataExchange after release
                "00 00 FF 00 FF 00 00 00 FF 03 FD D5 41 27 C3 00",  # ACK, 0x27 no target
            ),
        ],
    )
    assert card.frames == [hx("90 60 00 00 00")]
    assert card.powered_off == 1  # InRelease halts the card: its session is gone
    assert chip.exchanges == 2


def test_exchange_without_target_is_0x27(chip, field):
    field.place(FakeCard())  # present but never activated
    talk(
        chip,
        [
            (
                "00 00 FF 04 FC D4 40 01 AA 41 00",  # InDataExchange Tg1 AA
                "00 00 FF 00 FF 00 00 00 FF 03 FD D5 41 27 C3 00",  # ACK, 0x27
            ),
        ],
    )


def test_card_removed_mid_session_times_out(chip, field):
    card = FakeCard()
    field.place(card)
    chip.handle_bytes(hx("00 00 FF 04 FC D4 4A 01 00 E1 00"))
    field.remove()
    assert card.powered_off == 1  # removing the card takes its power
    talk(
        chip,
        [
            (
                "00 00 FF 04 FC D4 40 01 AA 41 00",  # InDataExchange Tg1 AA
                "00 00 FF 00 FF 00 00 00 FF 03 FD D5 41 01 E9 00",  # ACK, 0x01 timeout
            ),
        ],
    )
    # the card comes back (same card object): it must be activated again first
    field.place(card)
    talk(
        chip,
        [
            (
                "00 00 FF 04 FC D4 40 01 AA 41 00",  # InDataExchange Tg1 AA
                "00 00 FF 00 FF 00 00 00 FF 03 FD D5 41 01 E9 00",  # ACK, still 0x01
            ),
        ],
    )


def test_card_torn_during_transceive_is_a_timeout(chip, field):
    class TornCard(FakeCard):
        def transceive(self, apdu):
            field.remove()  # pulled away while the command was on the air
            raise ConnectionError("no power")

    field.place(TornCard())
    chip.handle_bytes(hx("00 00 FF 04 FC D4 4A 01 00 E1 00"))
    talk(
        chip,
        [
            (
                "00 00 FF 04 FC D4 40 01 AA 41 00",  # InDataExchange Tg1 AA
                "00 00 FF 00 FF 00 00 00 FF 03 FD D5 41 01 E9 00",  # ACK, 0x01 timeout
            ),
        ],
    )
    assert isinstance(chip.last_card_error, ConnectionError)


def test_diagnose_line_test_and_general_status(chip, field):
    talk(
        chip,
        [
            (
                "00 00 FF 06 FA D4 00 00 AB CD EF C5 00",  # Diagnose NumTst 0 (line test) ABCDEF
                (
                    "00 00 FF 00 FF 00"  # ACK
                    " 00 00 FF 06 FA D5 01 00 AB CD EF C3 00"
                ),  # echo
            ),
            (
                "00 00 FF 02 FE D4 04 28 00",  # GetGeneralStatus
                (
                    "00 00 FF 00 FF 00"  # ACK
                    " 00 00 FF 06 FA D5 05 00 00 00 00 26 00"
                ),  # Err 0, Field 0, NbTg 0, SAM 0
            ),
        ],
    )


def test_malformed_frames_are_ignored_or_rejected(chip):
    talk(
        chip,
        [
            ("00 00 FF 02 FD D4 02 2A 00", ""),  # bad LCS: silently dropped
            ("00 00 FF 02 FE D4 02 2B 00", ""),  # bad DCS: silently dropped
            ("13 37 FF 00 AA 55 00 00 00", ""),  # line noise
            ("00 00 FF FF FF 01 00 FF D4 02 2A 00", ""),  # extended frame: not supported
            (
                "00 00 FF 02 FE D4 7E AE 00",  # unknown command 0x7E
                "00 00 FF 00 FF 00 00 00 FF 01 FF 7F 81 00",  # ACK, syntax error frame
            ),
            (
                "00 00 FF 02 FE D5 02 29 00",  # wrong TFI (D5 is the chip's)
                "00 00 FF 00 FF 00 00 00 FF 01 FF 7F 81 00",  # ACK, syntax error frame
            ),
            (
                "00 00 FF 03 FD D4 14 00 18 00",  # SAMConfiguration mode 0: invalid
                "00 00 FF 00 FF 00 00 00 FF 01 FF 7F 81 00",  # ACK, syntax error frame
            ),
            (
                "00 00 FF 02 FE D4 02 2A 00",  # GetFirmwareVersion: still alive
                "00 00 FF 00 FF 00 00 00 FF 06 FA D5 03 32 01 06 07 E8 00",
            ),
        ],
    )
    assert chip.bad_frames >= 2  # LCS, DCS (+ noise that looked like a header)


def test_nack_repeats_last_response_and_host_ack_is_ignored(chip):
    chip.handle_bytes(hx("00 00 FF 02 FE D4 02 2A 00"))  # GetFirmwareVersion
    talk(
        chip,
        [
            ("00 00 FF FF 00 00", "00 00 FF 06 FA D5 03 32 01 06 07 E8 00"),  # NACK: again
            ("00 00 FF 00 FF 00", ""),  # host ACK (abort): nothing to say
        ],
    )


def test_frames_split_and_joined_arbitrarily(chip, field):
    field.place(FakeCard())
    stream = hx("00 00 FF 02 FE D4 02 2A 0000 00 FF 04 FC D4 4A 01 00 E1 00")
    out = b"".join(chip.handle_bytes(stream[i : i + 1]) for i in range(len(stream)))
    assert out.count(ACK) == 2
    assert hx("D5 03 32 01 06 07") in out and hx("D5 4B 01 01 03 44") in out


def test_random_garbage_never_crashes(chip, field):
    import random

    field.place(FakeCard())
    rng = random.Random(7)
    for _ in range(300):
        chip.handle_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
        chip.handle_bytes(bytes([0x00, 0xFF, rng.randrange(256), rng.randrange(256)]))
    chip.resync()
    assert chip.handle_bytes(hx("00 00 FF 02 FE D4 02 2A 00")).endswith(
        hx("D5 03 32 01 06 07 E8 00")
    )


def test_noise_hook_drops_bytes():
    chip = PN532Emulator(RFField(), noise=Noise(seed=1, drop=1.0, directions=("tx",)))
    assert chip.handle_bytes(hx("00 00 FF 02 FE D4 02 2A 00")) == b""
    assert chip.noise.dropped == 19


def test_counters_and_air_model(chip, field):
    field.place(FakeCard())
    chip.handle_bytes(hx("00 00 FF 04 FC D4 4A 01 00 E1 00"))
    chip.reset_counters()
    chip.handle_bytes(hx("00 00 FF 08 F8 D4 40 01 90 60 00 00 00 FB 00"))
    s = chip.stats()
    assert s["frames_in"] == 1 and s["frames_out"] == 2 and s["exchanges"] == 1
    assert s["bytes_in"] == 15 and s["bytes_out"] == 6 + 19
    assert s["air_bytes"] == (5 + 3) + (9 + 3)  # PCB + INF + CRC each way
    assert s["air_seconds"] == pytest.approx(20 * 9 / 106000)


def test_serve_over_tcp_one_connection_at_a_time(field):
    chip = PN532Emulator(field).serve()
    try:
        for _ in range(2):  # the firmware reconnects: the chip is still there
            with socket.create_connection(("127.0.0.1", chip.port), timeout=2) as s:
                s.sendall(hx("00 00 FF 02 FE D4 02 2A 00"))  # GetFirmwareVersion
                want = hx("00 00 FF 00 FF 00 00 00 FF 06 FA D5 03 32 01 06 07 E8 00")
                got = b""
                while len(got) < len(want):
                    got += s.recv(64)
                assert got == want
    finally:
        chip.close()
