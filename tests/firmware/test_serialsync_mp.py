"""firmware/serialsync.py on the real MicroPython VM: request lines in, response lines checked in CPython.

The terminal side runs tests/firmware/fake_terminal_mp.py (Responder + a small journal of real,
MAC-chained taprecords); requests are written to a file whose lines the script hands to
`Responder.handle_line`, as firmware.app does with the lines of the USB serial.
"""

import binascii
import json
import os
import random
import time

from card_schema import frames, frames_host, taprecord, taprecord_host

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "fake_terminal_mp.py")
KEY = bytes(range(16))
TERMINAL = 7
NONCE = bytes(range(0xA0, 0xA8))  # the terminal's (TAPKIT_NONCE): controls are tagged over it


def _ctl(ftype, req_id, body, key=KEY, nonce=NONCE):
    """A control frame (ACK, SET_CLOCK, INSTALL) with the tag the terminal obeys."""
    return frames.encode(ftype, req_id, frames_host.control_body(key, nonce, ftype, body))


def run_terminal(mp_run, tmp_path, requests, n_records=20, clock_offset=0, env=None):
    """Feed `requests` (a list of lines) to the VM terminal; return (responses, state).
    The VM runs in tmp_path/board (installed config blobs land there)."""
    req = tmp_path / "requests.bin"
    req.write_bytes(b"".join(requests))
    board = tmp_path / "board"
    board.mkdir(exist_ok=True)
    env = {"TAPKIT_NONCE": NONCE.hex(), **(env or {})}
    p = mp_run(
        SCRIPT, KEY.hex(), TERMINAL, n_records, clock_offset, req, check=True, env=env, cwd=board
    )
    out = p.stdout.encode()
    responses = []
    state = None
    for line in out.splitlines(keepends=True):
        if line.startswith(b"#state "):
            state = json.loads(line[7:])
        else:
            responses.append(frames.decode(line))  # every line the terminal writes is a frame
    return responses, state


def check_chain(recs, prev=taprecord.GENESIS_MAC):
    # (not taprecord_host.verify_chain: its F_MAC index currently points at the reserved field)
    for r in recs:
        taprecord_host.unpack(r)
        assert taprecord.mac_ok(r, prev, KEY), taprecord.seq_of(r)
        prev = r[52:60]


def payload_hex(ftype, req_id, body):
    """The frame's payload without its CRC, as hex (what the transcripts below spell out)."""
    return binascii.hexlify(bytes([1, ftype]) + req_id.to_bytes(2, "little") + body).decode()


def test_transcript(mp_run, tmp_path):
    reqs = [
        frames.encode(frames.IDENTIFY, 0x0101),
        frames.encode(frames.PULL, 0x0102, frames_host.pull_body(1, 3)),
        _ctl(frames.ACK, 0x0103, frames_host.u32_body(3)),
        _ctl(frames.ACK, 0x0104, frames_host.u32_body(21)),
        frames.encode(0x09, 0x0105),
        _ctl(frames.SET_CLOCK, 0x0106, frames_host.u32_body(1800000000)),
        frames.encode(frames.DIAG_LOG, 0x0107),
    ]
    resp, state = run_terminal(mp_run, tmp_path, reqs, clock_offset=-100)
    assert [(t, r) for t, r, _ in resp] == [
        (0x81, 0x0101),
        (0x82, 0x0102),
        (0x83, 0x0103),
        (0xFF, 0x0104),
        (0xFF, 0x0105),
        (0x84, 0x0106),
        (0x85, 0x0107),
    ]
    ident = json.loads(resp[0][2])
    assert ident["terminal_id"] == TERMINAL and ident["fw"] == "0.1.0-test"
    assert (ident["head_seq"], ident["acked_seq"], ident["unsynced"]) == (20, 0, 20)
    assert ident["max_records"] == frames.MAX_RECORDS
    recs = frames_host.parse_records(resp[1][2])
    assert [taprecord.seq_of(r) for r in recs] == [1, 2, 3]
    check_chain(recs)
    assert [payload_hex(*r) for r in resp[2:5]] == [
        "0183030103000000",  # ACK response: acked_seq 3
        "01ff040103" + b"ack 21 beyond head 20".hex(),  # ERROR out of range
        "01ff050101" + b"unknown request 0x09".hex(),  # ERROR unknown request
    ]
    old, fresh = frames_host.parse_clock(resp[5][2])
    assert fresh is not None and fresh != NONCE  # the next control covers a new nonce
    assert abs(old - (time.time() - 100)) < 60  # the terminal's clock before the change (-100 s)
    assert state["clock"] >= 1800000000 and state["acked"] == 3 and state["acks"] == [3]
    assert json.loads(resp[6][2]) == ["boot ok", "pn532 ok"]


def test_pull_limits(mp_run, tmp_path):
    reqs = [
        frames.encode(frames.PULL, 1, frames_host.pull_body(1, 500)),  # capped to MAX_RECORDS
        frames.encode(frames.PULL, 2, frames_host.pull_body(15, 100)),  # the last 6
        frames.encode(frames.PULL, 3, frames_host.pull_body(21, 5)),  # beyond head: none
        frames.encode(frames.PULL, 4, frames_host.pull_body(0, 5)),  # seq 0: bad request
        frames.encode(frames.PULL, 5, b"\x01\x00"),  # short body: bad request
        _ctl(frames.SET_CLOCK, 6, frames_host.u32_body(1000)),  # 1970: refused
        frames.encode(frames.PULL, 7, frames_host.pull_body(3, 0)),  # max 0: none
    ]
    resp, _state = run_terminal(mp_run, tmp_path, reqs)
    seqs = [
        [taprecord.seq_of(r) for r in frames_host.parse_records(b)]
        for t, _, b in resp
        if t == 0x82
    ]
    assert seqs == [list(range(1, 12)), list(range(15, 21)), [], []]
    errors = [(r, frames_host.parse_error(b)[0]) for t, r, b in resp if t == frames.ERROR]
    assert errors == [
        (4, frames.ERR_BAD_REQUEST),
        (5, frames.ERR_BAD_REQUEST),
        (6, frames.ERR_BAD_REQUEST),
    ]
    assert max(len(frames.encode(t, r, b)) for t, r, b in resp) < frames.MAX_LINE


def test_garbage_is_ignored_and_never_breaks_the_responder(mp_run, tmp_path):
    rnd = random.Random(1234)
    good = frames.encode(frames.PULL, 0x4242, frames_host.pull_body(2, 2))
    noise = [
        b">>> import machine\r\n",
        b"\x03\x03\x04\r\n",  # Ctrl-C, Ctrl-D: REPL bytes, not frames
        b"~\n",
        b"~!!!!\n",
        good[:-6] + b"\n",  # torn frame
        good[:10] + bytes([good[10] ^ 1]) + good[11:],  # one character changed
        b"~" + b"QUFB" * 400 + b"\n",  # overlong line
        bytes(rnd.getrandbits(8) for _ in range(3000)).replace(b"\n", b"") + b"\n",
        # a response: never answered
        frames.encode(frames_host.RECORDS, 9, frames_host.records_body([])),
        b"\n\n\r\n",
    ]
    reqs = []
    for n in noise:
        reqs += [n, good]
    reqs.append(b"garbage" + good)  # a frame after junk on the same line still counts
    resp, state = run_terminal(mp_run, tmp_path, reqs)
    assert len(resp) == len(noise) + 1
    for t, r, b in resp:
        assert (t, r) == (frames_host.RECORDS, 0x4242)
        assert [taprecord.seq_of(x) for x in frames_host.parse_records(b)] == [2, 3]
    assert state["requests"] == len(noise) + 1


# ---- INSTALL of signed config blobs, the extension hook ------------------------------------------
CONFIG_KEY = bytes(range(16, 32))


def _install_reqs(blob, req_id, chunk=frames_host.INSTALL_CHUNK, offsets=None):
    offsets = offsets if offsets is not None else range(0, len(blob), chunk)
    return [
        _ctl(
            frames.INSTALL, req_id + i, frames_host.install_body(o, len(blob), blob[o : o + chunk])
        )
        for i, o in enumerate(offsets)
    ]


def test_binary_pull_answers_the_same_records_escaped(mp_run, tmp_path):
    """PULL with PULL_BINARY: the same records in one escaped line of up to 14 records (~97 % of the
    bytes are records), decoded by the host's frames_host.decode; the base64 answer beside it."""
    bin_max = frames_host.PULL_BINARY | 14
    reqs = [
        frames.encode(frames.PULL, 1, frames_host.pull_body(1, 11)),
        frames.encode(frames.PULL, 2, frames_host.pull_body(1, bin_max)),
        frames.encode(frames.PULL, 3, frames_host.pull_body(12, frames_host.PULL_BINARY | 99)),
        frames.encode(frames.IDENTIFY, 4),
    ]
    req = tmp_path / "requests.bin"
    req.write_bytes(b"".join(reqs))
    board = tmp_path / "board"
    board.mkdir()
    p = mp_run(SCRIPT, KEY.hex(), TERMINAL, 30, 0, req, check=True, cwd=board, binary=True)
    lines = [ln for ln in p.stdout.splitlines(keepends=True) if not ln.startswith(b"#")]
    b64 = frames_host.parse_records(frames.decode(lines[0])[2])
    line = lines[1]
    assert line.startswith(b"~!") and line.count(b"\n") == 1 and line.count(b"~") == 1
    t, rid, body = frames_host.decode(line)
    recs = frames_host.parse_records(body)
    assert (t, rid, len(recs)) == (frames_host.RECORDS, 2, 14) and recs[:11] == b64
    assert b"=" in line and len(line) < 14 * 64 * 1.08  # escaped, and near the bare size
    rest = frames_host.parse_records(frames_host.decode(lines[2])[2])
    assert [taprecord.seq_of(r) for r in rest] == list(range(12, 26))  # at most 14
    assert json.loads(frames.decode(lines[3])[2])["proto"] == frames_host.PROTO_BINARY
    check_chain(recs + rest[3:])


def test_install_signed_blobs(mp_run, tmp_path):
    from card_schema import signed

    from card_schema import tariff

    table = {"fares": {str(n): 20000 + n for n in range(25)}, "default": 25000}  # ~370 B
    fares = signed.seal(CONFIG_KEY, signed.KIND_FARES, 7, json.dumps(table).encode())  # 3 chunks
    assert 2 * frames_host.INSTALL_CHUNK < len(fares) <= 3 * frames_host.INSTALL_CHUNK
    deny = signed.seal(
        CONFIG_KEY, signed.KIND_DENY, 3, tariff.pack_deny({b"\x04\x11\x22\x33\x44\x55\x66": 1})
    )
    forged = signed.seal(bytes(16), signed.KIND_DENY, 9, b"x")
    old = signed.seal(CONFIG_KEY, signed.KIND_FARES, 6, b"old")
    # signed with the right key but not a fare table: must not replace the good one
    broken = signed.seal(CONFIG_KEY, signed.KIND_FARES, 8, b'{"fares": {"1": -5}}')
    c = frames_host.INSTALL_CHUNK
    reqs = [frames.encode(frames.IDENTIFY, 1)]
    # chunk 2 retransmitted (its answer was lost), then the rest
    reqs += _install_reqs(fares, 10, offsets=[0, c, c, 2 * c])
    reqs += _install_reqs(deny, 20) + _install_reqs(deny, 30)  # the same blob twice: no-op
    reqs += _install_reqs(forged, 40) + _install_reqs(old, 50) + _install_reqs(broken, 70)
    reqs += [_ctl(frames.INSTALL, 60, frames_host.install_body(900, 1000, b"x"))]
    reqs += [frames.encode(frames.IDENTIFY, 2)]
    env = {"TAPKIT_CONFIG_KEY": CONFIG_KEY.hex()}
    resp, _ = run_terminal(mp_run, tmp_path, reqs, env=env)
    assert json.loads(resp[0][2])["fares_ver"] == 0
    got = [
        (t, r, frames_host.parse_install(b) if t == 0x86 else frames_host.parse_error(b))
        for t, r, b in resp[1:-1]
    ]
    assert got == [
        (0x86, 10, (c, 0, 0)),
        (0x86, 11, (2 * c, 0, 0)),
        (0x86, 12, (2 * c, 0, 0)),
        (0x86, 13, (len(fares), 1, 7)),
        (0x86, 20, (len(deny), 2, 3)),
        (0x86, 30, (len(deny), 2, 3)),
        (0xFF, 40, (frames.ERR_BAD_REQUEST, "config blob refused: bad signature")),
        (0xFF, 50, (frames.ERR_BAD_REQUEST, "config fares 6 is older than the installed 7")),
        (
            0xFF,
            70,
            (
                frames.ERR_BAD_REQUEST,
                "config fares 8 refused: fare table: amounts are integer Rial >= 0",
            ),
        ),
        (0xFF, 60, (frames.ERR_BAD_REQUEST, "chunk at 900 but 0 bytes received")),
    ]
    ident = json.loads(resp[-1][2])
    assert (ident["fares_ver"], ident["deny_ver"], ident["deny_delta_ver"]) == (7, 3, 0)
    board = tmp_path / "board"
    assert (board / "fares.bin").read_bytes() == fares and (
        board / "deny.bin"
    ).read_bytes() == deny
    assert sorted(p.name for p in board.iterdir()) == [
        "deny.bin",
        "fares.bin",
    ]  # no .new, no .part
    # a restarted terminal reports what it holds
    resp, _ = run_terminal(mp_run, tmp_path, [frames.encode(frames.IDENTIFY, 3)], env=env)
    assert json.loads(resp[0][2])["fares_ver"] == 7


def test_install_resumes_after_a_reboot(mp_run, tmp_path):
    """A deny list of 1,000 cards (8 KB, beyond the old in-RAM limit): the terminal reboots after 6
    chunks; the
    host asks (INSTALL_QUERY with the blob's head) and goes on from there; another blob's query is
    answered 0. Verified where it lies, installed by a rename: no .part left."""
    from card_schema import signed, signed_host, tariff

    entries = {bytes([4]) + (i * 104729).to_bytes(6, "big"): i % 2 for i in range(1000)}
    deny = signed_host.seal_fast(CONFIG_KEY, signed.KIND_DENY, 5, tariff.pack_deny(entries))
    c = frames_host.INSTALL_CHUNK
    offsets = list(range(0, len(deny), c))
    env = {"TAPKIT_CONFIG_KEY": CONFIG_KEY.hex()}

    def query(blob, req_id):
        body = frames_host.install_body(frames_host.INSTALL_QUERY, len(blob), blob[:13])
        return _ctl(frames.INSTALL, req_id, body)

    resp, _ = run_terminal(mp_run, tmp_path, _install_reqs(deny, 1, offsets=offsets[:6]), env=env)
    assert frames_host.parse_install(resp[-1][2]) == (6 * c, 0, 0)
    other = signed.seal(CONFIG_KEY, signed.KIND_DENY, 6, tariff.pack_deny({}))
    reqs = [query(other, 500), query(deny, 501)]
    reqs += _install_reqs(deny, 600, offsets=offsets[6:])
    reqs += [frames.encode(frames.IDENTIFY, 900)]
    resp, _ = run_terminal(mp_run, tmp_path, reqs, env=env)
    assert frames_host.parse_install(resp[0][2]) == (0, 0, 0)
    assert frames_host.parse_install(resp[1][2]) == (6 * c, 0, 0)
    assert frames_host.parse_install(resp[-2][2]) == (len(deny), signed.KIND_DENY, 5)
    assert json.loads(resp[-1][2])["deny_ver"] == 5
    board = tmp_path / "board"
    assert (board / "deny.bin").read_bytes() == deny and not (board / "install.part").exists()


def test_install_without_a_config_key_is_unknown(mp_run, tmp_path):
    resp, _ = run_terminal(mp_run, tmp_path, _install_reqs(b"TKS1" + bytes(40), 1))
    assert [(t, frames_host.parse_error(b)[0]) for t, _, b in resp] == [
        (frames.ERROR, frames.ERR_UNKNOWN_TYPE)
    ]


def test_extra_handler_serves_new_request_types(mp_run, tmp_path):
    reqs = [
        frames.encode(0x30, 1, b"abc"),
        frames.encode(0x31, 2),  # the handler raises: an ERROR frame, the responder stays up
        frames.encode(0x32, 3),  # the handler does not know it either
        frames.encode(frames.IDENTIFY, 4),
    ]
    resp, state = run_terminal(mp_run, tmp_path, reqs, env={"TAPKIT_EXTRA": "1"})
    assert resp[0] == (0xB0, 1, b"cba")
    assert (resp[1][0], frames_host.parse_error(resp[1][2])) == (
        frames.ERROR,
        (frames.ERR_INTERNAL, "extra handler failed"),
    )
    assert (resp[2][0], frames_host.parse_error(resp[2][2])[0]) == (
        frames.ERROR,
        frames.ERR_UNKNOWN_TYPE,
    )
    assert resp[3][0] == frames_host.IDENTIFY_R and state["requests"] == 4


# ---- controls are authenticated (issue "Stolen terminal") ----------------------------------------
def test_forged_replayed_and_untagged_controls_change_nothing(mp_run, tmp_path):
    """Over a bare cable an ACK without storing made 17 taps vanish and SET_CLOCK three days back let
    an expired card ride. Now a control needs the terminal's tag over its nonce."""
    other = bytes(range(100, 116))  # a key that is not this terminal's
    now = int(time.time())
    reqs = [
        frames.encode(frames.IDENTIFY, 1),
        frames.encode(frames.ACK, 2, frames_host.u32_body(17)),  # no tag
        _ctl(frames.ACK, 3, frames_host.u32_body(17), key=other),  # forged
        _ctl(frames.ACK, 4, frames_host.u32_body(17), nonce=bytes(8)),  # another boot's nonce
        frames.encode(frames.ACK, 5, frames_host.u32_body(18) + _ctl(frames.ACK, 0, b"")[-8:]),
        frames.encode(frames.SET_CLOCK, 6, frames_host.u32_body(now - 3 * 86400)),  # 3 days back
        frames.encode(frames.SET_CLOCK, 7, frames_host.u32_body(4102444800)),  # 2100
        frames.encode(frames.INSTALL, 8, frames_host.install_body(0, 100, b"x" * 20)),  # no tag
        frames.encode(frames.SET_CLOCK, 9, frames_host.u32_body(now + 100)),  # a drift fix: ok
        _ctl(frames.ACK, 10, frames_host.u32_body(5)),  # the technician's: obeyed
        _ctl(frames.SET_CLOCK, 11, frames_host.u32_body(now + 3600)),  # tagged: obeyed
        _ctl(frames.SET_CLOCK, 11, frames_host.u32_body(now + 3600)),  # its retransmit
        _ctl(frames.SET_CLOCK, 12, frames_host.u32_body(now - 3 * 86400)),  # replay: old nonce
    ]
    resp, state = run_terminal(mp_run, tmp_path, reqs, env={"TAPKIT_CONFIG_KEY": CONFIG_KEY.hex()})
    nonce = json.loads(resp[0][2])["nonce"]
    assert nonce == NONCE.hex()
    codes = {r: frames_host.parse_error(b)[0] for t, r, b in resp if t == frames.ERROR}
    assert codes == {r: frames_host.ERR_AUTH for r in (2, 3, 4, 5, 6, 7, 8, 12)}
    by_id = {r: b for t, r, b in resp if t != frames.ERROR}
    assert frames_host.parse_u32(by_id[10]) == 5
    # the tagged SET_CLOCK answers with the clock before and the nonce the next control covers
    assert len(by_id[11]) == 12 and by_id[11][4:] != NONCE
    assert state["acked"] == 5 and state["acks"] == [5]
    assert abs(state["clock"] - (now + 3600)) < 60
    assert state["refused"] == 8
