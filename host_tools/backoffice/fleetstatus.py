"""Fleet status: every terminal and office as the back office last heard from it.

    rows = status(store, stale_hours=24, high_water=0.8)     # one dict per source, JSON-ready
    alerts(rows)                                             # the flagged ones, worst first

What a source said at its last contact is in the store (store.note_sync): over USB the terminal's
IDENTIFY (firmware version, config and table versions, unsynced taps and journal capacity before
the sync, its clock against the host's, its newest diagnostics lines); over Wi-Fi a batch carries
its config versions only, so unsynced, fill and drift are the ones of its last USB contact (with
that contact's time). Last errors: the terminal's newest error records and refused uploads.
Flags: `stale` (no contact for more than `stale_hours`), `high_water` (the journal was filled to
`high_water` or more at the last contact: it refuses paid taps when full), `drift` (the clock was
more than `drift_s` off at the last USB contact), `never` (known only from records), `clock_unset`
(its newest stored record was written with the clock not set since power-up: a power cut on a board
without RTC, and no sync since). `clock_unset` (the column): how many of its stored records were.
"""

import time

VERSION_KEYS = ("fw", "config_ver", "fares_ver", "deny_ver", "deny_delta_ver", "profile")


def _last_errors(store, n=3, limit=5000):
    """{terminal: [{seq, time, what}]}: the newest error records of every terminal (one query on
    the kind index; error records are rare)."""
    out = {}
    # no ORDER BY time: with it SQLite walks the time index through every row to find the few
    # error records; by the kind index they are a handful, sorted here
    rows = store._all(
        "SELECT terminal, seq, time, result FROM taps WHERE kind = 'error' LIMIT %d" % limit
    )
    for tid, s, t, r in sorted(rows, key=lambda x: -int(x[2])):
        got = out.setdefault(int(tid), [])
        if len(got) < n:
            got.append({"seq": int(s), "time": int(t), "what": "error record: " + r})
    return out


def status(store, now=None, stale_hours=24.0, high_water=0.8, drift_s=60):
    """[{...}] one per terminal and office, by id."""
    now = int(time.time() if now is None else now)
    rejects = {}
    errors_of = _last_errors(store)
    unset = {
        int(tid): (int(n), int(last))
        for tid, n, last in store._all(
            "SELECT terminal, COUNT(*), MAX(seq) FROM taps WHERE clock_unset = 1 GROUP BY terminal"
        )
    }
    for r in store.rejects():
        if r["terminal"] is not None:
            rejects.setdefault(int(r["terminal"]), []).append(r)
    out = []
    for t in store.terminals():
        info = t.get("info") or {}
        seen = max((x for x in (t["last_usb"], t["last_wifi"]) if x), default=t["last_sync"])
        via = None
        if seen:
            via = "usb" if seen == t["last_usb"] else "wifi" if seen == t["last_wifi"] else None
            via = via or info.get("via") or ("file" if t["role"] == "office" else None)
        unsynced = info.get("unsynced")
        capacity = info.get("capacity")
        fill = round(100.0 * unsynced / capacity, 1) if unsynced is not None and capacity else None
        drift = info.get("clock_drift")
        errors = list(errors_of.get(t["id"], []))
        errors += [
            {"time": r["at"], "what": f"refused {r['source']} upload: {r['reason'][:120]}"}
            for r in rejects.get(t["id"], [])[-2:]
        ]
        errors += [{"time": t["last_usb"], "what": line} for line in (info.get("diag") or [])[-3:]]
        row = {
            "terminal": t["id"],
            "role": t["role"],
            "last_seen": seen,
            "via": via,
            "last_usb": t["last_usb"],
            "last_wifi": t["last_wifi"],
            "hours_since": round((now - seen) / 3600.0, 1) if seen else None,
            "last_seq": t["last_seq"],
            "acked_seq": t["acked_seq"],
            "unsynced": unsynced,
            "capacity": capacity,
            "fill": fill,
            "as_of": info.get("seen_usb") or t["last_usb"],  # when unsynced/fill/drift were said
            "clock_drift": drift,
            "clock_unset": unset.get(t["id"], (0, 0))[0],
            "versions": {k: info[k] for k in VERSION_KEYS if k in info},
            "errors": errors,
        }
        flags = []
        if not seen:
            flags.append("never")
        elif now - seen > stale_hours * 3600:
            flags.append("stale")
        if fill is not None and fill >= 100.0 * high_water:
            flags.append("high_water")
        if drift is not None and abs(drift) > drift_s:
            flags.append("drift")
        if rejects.get(t["id"]):
            flags.append("rejects")
        if t["last_seq"] and unset.get(t["id"], (0, 0))[1] == t["last_seq"]:
            flags.append("clock_unset")
        row["flags"] = flags
        out.append(row)
    return out


_WEIGHT = {"high_water": 0, "stale": 1, "never": 2, "drift": 3, "clock_unset": 3, "rejects": 4}


def alerts(rows):
    """The flagged rows, worst first (a filling journal before a silent terminal)."""
    flagged = [r for r in rows if r["flags"]]
    return sorted(flagged, key=lambda r: (min(_WEIGHT[f] for f in r["flags"]), r["terminal"]))
