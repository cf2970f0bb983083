"""Firmware over Wi-Fi, the server's half: POST /v1/ota (card_schema/release.py TKO1) and the offer a
batch answer carries (server.py routes here; the terminal's half is firmware/wifi.py).

    status, answer = otaserve.answer(ingest, body)   # (200, TKA2 answer bytes) or (4xx, text)
    chunk = otaserve.offer(ingest, store, tid)       # for Ingest.batch: (4, release, total, 0, b"")

A terminal reports its firmware status (running release, state, the last update's result, the
release it asks chunks of and how much of it it holds), MAC'd with its journal key. The server keeps
it (releases.note_status: the fleet view) and answers with the Wi-Fi answer (upload_host.answer_body,
acked 0) carrying the next upload_host.CHUNK bytes of the release it should get, sealed for it with
its config key, from where its staging file ends; or nothing. A batch answer that has no config
chunk offers that release (kind release.KIND_FIRMWARE, n 0): the terminal then asks here. Only a
terminal that has reported once is offered anything (a terminal without OTA would ask forever).
"""

import threading
import time

from card_schema import release, release_host, upload_host
from card_schema.crypto_host import cmac_fast
from host_tools import keystore
from host_tools.backoffice import releases

_TTL = 5.0  # seconds a look at the published plans is reused
_cache = {}  # id(ingest) -> {"plans": (when, [...]), "sealed": {(tid, rel): blob}, "status": {}}
_lock = threading.Lock()


def _state(ingest):
    with _lock:
        return _cache.setdefault(id(ingest), {"plans": (0.0, []), "sealed": {}, "status": {}})


def _plans(ingest, store):
    st = _state(ingest)
    when, p = st["plans"]
    if time.monotonic() - when > _TTL:
        p = releases.plans(store)
        st["plans"] = (time.monotonic(), p)
    return p


def _sealed(ingest, store, tid, rel):
    st = _state(ingest)
    blob = st["sealed"].get((tid, rel))
    if blob is None:
        from card_schema import signed_host

        payload = releases.payload(store, rel)
        if payload is None:
            return None
        blob = signed_host.seal_fast(ingest.keys(tid)[2], release.KIND_FIRMWARE, rel, payload)
        with _lock:
            if len(st["sealed"]) > 32:
                st["sealed"].clear()
            st["sealed"][(tid, rel)] = blob
    return blob


def _status(ingest, store, tid):
    """The terminal's last firmware status (None: never reported), looked up at most every _TTL s."""
    st = _state(ingest)
    when, s = st["status"].get(tid, (0.0, None))
    if time.monotonic() - when > _TTL:
        s = releases.status_of(store, tid)
        st["status"][tid] = (time.monotonic(), s)
    return s


def offer(ingest, store, tid):
    """The offer for a batch answer: (KIND_FIRMWARE, release, total, 0, b"") or None."""
    p = _plans(ingest, store)
    if not p:
        return None  # no release published: no look at the terminal's status
    s = _status(ingest, store, tid)
    if s is None or s["state"] not in ("idle", "downloading"):
        return None
    rel = releases.wanted(store, tid, s["board"], s, p)
    if rel is None:
        return None
    blob = _sealed(ingest, store, tid, rel)
    return (release.KIND_FIRMWARE, rel, len(blob), 0, b"") if blob else None


def answer(ingest, body, source="-"):
    """(HTTP status, answer bytes or one line of text) for one POST /v1/ota from `source`: the same
    rules for strangers as POST /v1/batch (ingest.batch): refusals counted and rate-limited per
    source, an unknown id and a wrong MAC get the same 403 after the same work."""
    over = ingest.over_budget(source)
    if over:
        return over
    store = ingest._store()
    try:
        try:
            r = release_host.parse_ota(body)
        except ValueError as e:
            ingest._reject(store, None, "malformed", f"OTA: {e}", source)
            return 400, f"bad OTA request: {e}"
        tid = r.terminal
        jkey = keystore.terminal_key(ingest.ks, tid)  # derived for any id: one timing for all
        mac_ok = cmac_fast(jkey, bytes(body[: release.OTA_MACED]))[:8] == r.mac
        if not mac_ok or not ingest.known(store, tid):
            ingest._reject(store, None, "unauthenticated", f"OTA: terminal {tid}", source)
            return 403, "refused"
        jkey, wire, _ = ingest.keys(tid)
        staging = r.state >= release.STAGING
        status = releases.from_info(
            {
                "board": r.board,
                "ota": [r.state, r.running, r.wanted if staging else 0, r.last, r.result, ""],
            }
        )
        status["part"] = 0 if staging else r.part_off
        old = _status(ingest, store, tid)
        if old is not None:  # the reason is in IDENTIFY over USB; over Wi-Fi keep the last one
            if (old["last_release"], old["last_result"]) == (r.last, status["last_result"]):
                status["reason"] = old["reason"]
        back = list(old.get("rolled_back", ())) if old is not None else []
        if status["last_result"] == "rolled back" and r.last not in back:
            back.append(r.last)
        status["rolled_back"] = back
        if old is None or any(old.get(k) != v for k, v in status.items() if k != "reason"):
            releases.note_status(store, tid, status, via="wifi")
            _state(ingest)["status"][tid] = (time.monotonic(), dict(status, terminal=tid))
        chunk = None
        rel = r.wanted if not staging else 0
        if rel and rel == releases.wanted(store, tid, r.board, status, _plans(ingest, store)):
            blob = _sealed(ingest, store, tid, rel)
            off = r.part_off if 0 < r.part_off < len(blob) else 0
            chunk = (
                release.KIND_FIRMWARE,
                rel,
                len(blob),
                off,
                blob[off : off + upload_host.CHUNK],
            )
            ingest._count("config_sent", len(chunk[4]))
        return 200, upload_host.answer_body(
            jkey, wire, r.iv, 0, int(time.time()), chunk, mac=cmac_fast
        )
    finally:
        ingest.pool.put(store)
