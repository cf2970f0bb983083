# card_schema.desfire on both interpreters: exact frame transcripts for the commands a terminal and the
# card office send, with fixed randoms (RndA here, RndB on the card side), in both framings.
# Common subset only: no pytest here.
import binascii

from card_schema import desfire_admin
from card_schema.desfire import MODE_ENC, MODE_MAC, CardError
from card_schema.desfire_admin import DESFireAdmin

u = binascii.unhexlify

KEY1 = u("000102030405060708090A0B0C0D0E0F")  # application key 1 (debit) of the test card
RND_A = u("A0A1A2A3A4A5A6A7A8A9AAABACADAEAF")  # the client's random
# the card's random in these transcripts: RndB = B0 B1 .. BF
SESSION = "a0a1a2a3b0b1b2b3acadaeafbcbdbebf"  # RndA[0:4] RndB[0:4] RndA[12:16] RndB[12:16]


def _hex(s):
    return u(s.replace(" ", ""))


def h(b):
    return binascii.hexlify(b).decode()


class Script:
    """A card answering from a transcript; checks every frame the client sends against it."""

    def __init__(self, rows):
        self.rows = [(_hex(a), _hex(b)) for a, b in rows]
        self.i = 0

    def __call__(self, frame):
        if self.i >= len(self.rows):
            raise AssertionError(f"extra frame {h(frame)}")
        want, resp = self.rows[self.i]
        if bytes(frame) != want:
            raise AssertionError(f"frame {self.i}: sent {h(frame)}, transcript {h(want)}")
        self.i += 1
        return resp

    def done(self):
        if self.i != len(self.rows):
            raise AssertionError(f"only {self.i} of {len(self.rows)} frames sent")
        return self.i


def fixed_random(n):
    return RND_A[:n]


WRAPPED = [
    ("90 5A 00 00 03 01 4B 54 00", "91 00"),  # SelectApplication 544B01 (AID LSB first)
    (
        "90 AA 00 00 01 01 00",  # AuthenticateAES key 1
        "E3 15 20 9E D0 E7 C9 4F 74 A6 5C 99 F6 EA DC 1E 91 AF",
    ),  # E(K, 0, RndB), more
    (
        (
            "90 AF 00 00 20 F7 67 FE CC 72 B8 8F 94 F0 F7 05 06 1E 90 4C 76"  # E(K, ekRndB, RndA||rotl(RndB))
            " A0 DD 27 AC 02 7B 9B B7 72 1B 55 B8 11 BB 05 DB 00"
        ),
        "6B 58 72 C3 4A 19 06 D3 D1 D2 7E 0E 97 24 62 2D 91 00",
    ),  # E(K, c2, rotl(RndA))
    (
        "90 BD 00 00 07 01 00 00 00 04 00 00 00",  # ReadData file 1 offset 0 length 4 (MAC)
        "00 01 02 03 C7 E2 6B 1C 99 3C D6 B6 91 00",
    ),  # data, CMAC(data||00)[:8]
    (
        "90 6C 00 00 01 02 00",  # GetValue file 2 (enciphered)
        "A1 AF 77 42 A5 02 B2 77 47 D6 FC 4D 73 AC C3 A2 91 00",
    ),  # E(value||CRC32||pad)
    (
        "90 DC 00 00 11 02 F2 C3 C5 F7 6E 22 8B 01 04 98 00 95 FF 20 8D B1 00",  # Debit 250, E(..)
        "B8 C3 D2 8E 9B B7 F6 09 91 00",
    ),  # CMAC(00)[:8]
    ("90 C7 00 00 00", "07 1B 86 B6 28 49 4D F1 91 00"),  # CommitTransaction, CMAC
]

NATIVE = [
    ("5A 01 4B 54", "00"),  # SelectApplication 544B01
    ("AA 01", "AF E3 15 20 9E D0 E7 C9 4F 74 A6 5C 99 F6 EA DC 1E"),  # AuthenticateAES key 1
    (
        (
            "AF F7 67 FE CC 72 B8 8F 94 F0 F7 05 06 1E 90 4C 76"  # E(K, ekRndB, RndA||rotl(RndB))
            " A0 DD 27 AC 02 7B 9B B7 72 1B 55 B8 11 BB 05 DB"
        ),
        "00 6B 58 72 C3 4A 19 06 D3 D1 D2 7E 0E 97 24 62 2D",
    ),  # E(K, c2, rotl(RndA))
    ("BD 01 00 00 00 04 00 00", "00 00 01 02 03 C7 E2 6B 1C 99 3C D6 B6"),  # ReadData, MAC
    ("6C 02", "00 EA 6E 21 8D AA D9 91 4E EF 50 61 A2 CB D1 28 31"),  # GetValue, enciphered
    (
        "DC 02 27 57 1D 14 D2 F8 31 D1 1D 21 4B F9 30 36 28 44",  # Debit 250, enciphered
        "00 45 A8 B7 41 E2 0C 75 DF",
    ),  # CMAC
    ("C7", "00 F6 05 16 F5 02 5C 86 87"),  # CommitTransaction, CMAC
]


def _tap(rows, wrapped):
    card = Script(rows)
    df = DESFireAdmin(card, wrapped=wrapped, random=fixed_random)
    df.select_application(0x544B01)
    df.authenticate_aes(1, KEY1)
    if h(df.session_key) != SESSION:
        raise AssertionError(f"session key {h(df.session_key)}")
    info = df.read_data(1, 0, 4, MODE_MAC)
    value = df.get_value(2, MODE_ENC)
    df.debit(2, 250, MODE_ENC)
    df.commit_transaction()
    card.done()
    return f"{h(info)} value={value} apdus={df.apdus}"


def test_tap_wrapped():
    return _tap(WRAPPED, True)


def test_tap_native():
    return _tap(NATIVE, False)


def test_trace_callback():
    seen = []
    df = DESFireAdmin(Script(WRAPPED[:1]), trace=lambda d, b, n: seen.append(f"{d} {n} {h(b)}"))
    df.select_application(0x544B01)
    return seen


def test_error_status_wrapped():
    df = DESFireAdmin(Script([("90 AA 00 00 01 01 00", "91 AE")]), random=fixed_random)
    try:
        df.authenticate_aes(1, KEY1)
    except CardError as e:
        return f"{e.status:02X} {e}"
    raise AssertionError("no error")


def test_error_drops_session():
    rows = WRAPPED[:3] + [("90 6C 00 00 01 02 00", "91 9D")]  # GetValue -> permission denied
    df = DESFireAdmin(Script(rows), random=fixed_random)
    df.select_application(0x544B01)
    df.authenticate_aes(1, KEY1)
    try:
        df.get_value(2, MODE_ENC)
    except CardError as e:
        return f"{e.status:02X} {e} authenticated={df.authenticated}"
    raise AssertionError("no error")


def test_bad_response_mac_is_integrity_error():
    read, resp = WRAPPED[3]
    rows = WRAPPED[:3] + [(read, resp.replace("B6 91 00", "B7 91 00"))]
    df = DESFireAdmin(Script(rows), random=fixed_random)
    df.select_application(0x544B01)
    df.authenticate_aes(1, KEY1)
    try:
        df.read_data(1, 0, 4, MODE_MAC)
    except CardError as e:
        return f"{e.status} {e} authenticated={df.authenticated}"
    raise AssertionError("no error")


def test_wrong_key_card_fails_to_prove():
    # the client holds the wrong key; a (replayed) card answer cannot match its RndA
    answers = [_hex(WRAPPED[1][1]), _hex(WRAPPED[2][1])]
    df = DESFireAdmin(lambda frame: answers.pop(0), random=fixed_random)
    try:
        df.authenticate_aes(1, bytes(16))  # not KEY1: RndB decrypts to garbage, RndA' won't match
    except CardError as e:
        return f"{e.status} {e}"
    raise AssertionError("no error")


def test_iso_status_word():
    df = DESFireAdmin(Script([("90 5A 00 00 03 01 4B 54 00", "6A 82")]))
    try:
        df.select_application(0x544B01)
    except CardError as e:
        return f"{e.status:04X} {e}"
    raise AssertionError("no error")


def test_response_chaining_native():
    # plain ReadData of 70 bytes: the card sends 59 bytes with AF, the client asks for the rest
    data = bytes(range(70))
    rows = [
        ("BD 07 00 00 00 46 00 00", "AF" + h(data[:59])),  # ReadData file 7, 70 bytes -> 59, more
        ("AF", "00" + h(data[59:])),  # AdditionalFrame -> last 11 bytes
    ]
    card = Script(rows)
    df = DESFireAdmin(card, wrapped=False)
    got = df.read_data(7, 0, 70)
    if got != data:
        raise AssertionError("chained data")
    return f"{len(got)} bytes in {card.done()} frames"


def test_command_chaining_wrapped():
    # plain WriteData of 60 bytes: header + 48 bytes fit the first frame (55), the rest follows
    data = bytes(range(60))
    rows = [
        ("90 3D 00 00 37 07 00 00 00 3C 00 00" + h(data[:48]) + "00", "91 AF"),  # WriteData, more
        ("90 AF 00 00 0C" + h(data[48:]) + "00", "91 00"),  # AdditionalFrame: last 12 bytes
    ]
    card = Script(rows)
    DESFireAdmin(card).write_data(7, 0, data)
    return card.done()


def test_get_version_three_frames():
    rows = [
        ("60", "AF 04 01 01 01 00 18 05"),  # GetVersion -> hardware info, more
        ("AF", "AF 04 01 01 01 04 18 05"),  # -> software info, more
        ("AF", "00 04 11 22 33 44 55 66 BA 7C 00 00 00 30 13"),  # -> UID, batch, week, year
    ]
    card = Script(rows)
    v = DESFireAdmin(card, wrapped=False).get_version()
    card.done()
    return "{} {} {}".format(h(v["uid"]), h(v["hw"]), v["storage"])


def test_status_names():
    return [str(CardError(s)) for s in (0x00, 0x0C, 0x9D, 0xA0, 0xBE, 0xF0)] + [
        str(CardError(desfire_admin.RESPONSE_INTEGRITY)),
        desfire_admin.status_name(0x1E),
    ]
