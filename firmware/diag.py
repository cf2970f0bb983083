"""Diagnostics for `tapkit diag`: the DIAG request (card_schema.frames.DIAG) of the sync protocol.

app.py hands it the requests serialsync does not know (Responder `extra`), importing this module only
while it answers (the bytecode leaves the heap again). The answer is one JSON object (identity,
journal, clock come with IDENTIFY; this adds what a technician needs beyond them):

    {"up": s since boot, "reset": cause, "heap_free": B, "heap_used": B, "taps": n since boot,
     "last_sync": unix or 0, "requests": n, "errors": n, "err": [newest lines],
     "reader": [IC, ver, rev, support] or "error text", "line_test": true/"error text",
     "card": uid hex of a card in the field or "", "wifi": "none" | "up" | "down",
     "tariff_ver": n, "deny_ver": n, "board": name, "board_errors": [..]}

Request body: empty, or b"t" to skip the reader self-test (the main loop owns the reader between
taps and a self-test costs two chip round trips), or b"w" for what `tapkit diag --watch` polls: only
what moves, small and without the self-test:

    {"head": journal head seq, "shown": displays since boot, "shows": [[n, unix, line1, line2,
     sound or null], ...] (the last 4, oldest first), "nerr": errors since boot, "err": [newest
     lines], "card": uid hex or ""}
"""

import gc
import json
import time

from card_schema import frames


def answer(term, body):
    if body == b"w":
        return frames.DIAG | frames.RESPONSE, _watch(term)
    b = term.board
    gc.collect()
    d = {
        "up": time.ticks_diff(time.ticks_ms(), term.booted) // 1000,
        "reset": b.reset_cause,
        "heap_free": gc.mem_free(),
        "heap_used": gc.mem_alloc(),
        "taps": term.taps,
        "last_sync": term.last_sync,
        "requests": term.sync_requests + term.responder.requests,
        "errors": len(term.errors),
        "err": term.errors[-3:],
        "tariff_ver": getattr(term, "tariff_ver", 0),
        "deny_ver": getattr(term, "deny_ver", 0),
        "board": b.name,
        "board_errors": b.errors[-3:],
        "card": "",
    }
    if term.present_uid:
        d["card"] = "".join("%02x" % x for x in term.present_uid)
    if body != b"t":
        r = term.reader
        try:
            d["reader"] = list(r.firmware_version())
        except Exception as e:  # noqa: BLE001 - a dead chip is what diag reports
            d["reader"] = "%s %s" % (type(e).__name__, e)
        try:
            d["line_test"] = r.self_test()
        except Exception as e:  # noqa: BLE001
            d["line_test"] = "%s %s" % (type(e).__name__, e)
    n = b.net
    if n is None:
        d["wifi"] = "none"
    else:
        try:
            d["wifi"] = "up" if n.isconnected() else "down"
        except Exception:  # noqa: BLE001
            d["wifi"] = "down"
    return frames.DIAG | frames.RESPONSE, json.dumps(d).encode()


def _watch(term):
    shows = sorted(s for s in term.shows if s[0])
    uid = term.present_uid
    d = {
        "head": term.journal.head_seq,
        "shown": term.shown,
        "shows": shows,
        "nerr": term.nerr,
        "err": [e[:80] for e in term.errors[-3:]],
        "card": "".join("%02x" % x for x in uid) if uid else "",
    }
    out = json.dumps(d).encode()
    while len(out) > frames.MAX_BODY and (d["err"] or d["shows"]):  # one frame, whatever the text
        (d["err"] or d["shows"]).pop(0)
        out = json.dumps(d).encode()
    return out
