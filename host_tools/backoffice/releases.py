"""Firmware releases in the store: published bundles, their rollout plans, each terminal's firmware
status (what the Wi-Fi server offers, what the fleet view shows).

    releases.publish(store, payload, "percent:10")   # a release file's payload and its rollout
    releases.wanted(store, 1001, "bus-validator")    # (release, payload) for that terminal, or None
    releases.note_status(store, 1001, {...})         # what a terminal reported (Wi-Fi or USB)
    releases.fleet(store)                            # versions per terminal, rollout progress

Rollout plans: "all", "percent:N" (the same N % of the board's terminals for a release, chosen by a
hash of release and terminal id, so a plan widened from 10 to 50 keeps the first 10 %),
"terminals:1001,1002-1010" (a list and ranges), "line:7" (the terminals whose newest tap was on
line 7). A terminal gets the newest release of its board whose plan includes it, when it runs an
older one and has not rolled that one back or refused it.

The tables are created on first write (CREATE TABLE IF NOT EXISTS, both dialects), so a store that
never saw a release is unchanged and read-only commands find no tables and show nothing.
"""

import binascii

import time

from card_schema import release, release_host
from host_tools import TapkitError

_TABLES = (
    """CREATE TABLE IF NOT EXISTS fw_releases (
        release BIGINT PRIMARY KEY,
        board TEXT NOT NULL,
        fw TEXT NOT NULL,
        payload {blob} NOT NULL,
        plan TEXT NOT NULL,
        published_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS fw_status (
        terminal BIGINT PRIMARY KEY,
        board TEXT,
        running BIGINT NOT NULL,
        state TEXT NOT NULL,
        staged BIGINT NOT NULL,
        part BIGINT NOT NULL,
        last_release BIGINT NOT NULL,
        last_result TEXT NOT NULL,
        reason TEXT NOT NULL,
        via TEXT NOT NULL,
        updated_at BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS fw_events (
        at BIGINT NOT NULL,
        terminal BIGINT NOT NULL,
        release BIGINT NOT NULL,
        result TEXT NOT NULL,
        reason TEXT NOT NULL
    )""",
)


class ReleaseError(TapkitError):
    pass


def ensure(store):
    blob = "BYTEA" if store.dialect == "postgresql" else "BLOB"
    with store._tx():
        for sql in _TABLES:
            store._exec(sql.format(blob=blob))


def _have(store):
    if store.dialect == "postgresql":
        return store._one("SELECT to_regclass('fw_status')")[0] is not None
    return store._one("SELECT name FROM sqlite_master WHERE name = 'fw_status'") is not None


def parse_plan(text):
    """A rollout plan's text, checked: ReleaseError with what is wrong."""
    kind, _, arg = str(text).partition(":")
    try:
        if kind == "all" and not arg:
            return "all"
        if kind == "percent" and 0 < int(arg) <= 100:
            return "percent:%d" % int(arg)
        if kind == "line" and int(arg) >= 0:
            return "line:%d" % int(arg)
        if kind == "terminals" and _ids(arg):
            return "terminals:" + arg.replace(" ", "")
    except ValueError:
        pass
    raise ReleaseError(
        f"rollout plan {text!r}: use all, percent:N (1..100), terminals:ID,ID-ID or line:N"
    )


def _ids(arg):
    out = []
    for part in arg.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def in_plan(plan, rel, tid, line=None):
    kind, _, arg = plan.partition(":")
    if kind == "all":
        return True
    if kind == "percent":
        return binascii.crc32(b"%d:%d" % (rel, tid)) % 100 < int(arg)
    if kind == "terminals":
        return any(lo <= tid <= hi for lo, hi in _ids(arg))
    if kind == "line":
        return line is not None and int(line) == int(arg)
    return False


def publish(store, payload, plan="all"):
    """Publish a release (its file's payload) with a rollout plan; a release already published with
    the same files only gets the new plan (widen a rollout: percent:10 -> all)."""
    plan = parse_plan(plan)
    try:
        r = release_host.unpack(payload)
    except ValueError as e:
        raise ReleaseError(f"not a release: {e}") from None
    ensure(store)
    with store._tx():
        old = store._one("SELECT payload FROM fw_releases WHERE release = ?", (r["release"],))
        if old is not None:
            if bytes(old[0]) != bytes(payload):
                raise ReleaseError(
                    f"release {r['release']} is already published with other files: "
                    "build a new release number"
                )
            store._exec("UPDATE fw_releases SET plan = ? WHERE release = ?", (plan, r["release"]))
            new = False
        else:
            store._exec(
                "INSERT INTO fw_releases (release, board, fw, payload, plan, published_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (r["release"], r["board"], r["fw"], bytes(payload), plan, int(time.time())),
            )
            new = True
    return {"release": r["release"], "board": r["board"], "plan": plan, "new": new}


def plans(store):
    """[(release, board, plan)] of every published release, newest first."""
    if not _have(store):
        return []
    rows = store._all("SELECT release, board, plan FROM fw_releases ORDER BY release DESC")
    return [(int(r), b, p) for r, b, p in rows]


def payload(store, rel):
    row = store._one("SELECT payload FROM fw_releases WHERE release = ?", (rel,))
    return bytes(row[0]) if row else None


def _line(store, tid):
    row = store._one("SELECT line FROM taps WHERE terminal = ? ORDER BY seq DESC LIMIT 1", (tid,))
    return int(row[0]) if row else None


def wanted(store, tid, board, status, all_plans=None):
    """The release terminal `tid` (a `board`) should get, or None: the newest of its board whose
    plan includes it, newer than what it runs and not one it rolled back or refused. `status` is its
    last report (status_of)."""
    if status is None:
        return None  # never reported: a terminal without OTA, nothing to offer
    line = None
    for rel, b, plan in all_plans if all_plans is not None else plans(store):
        if b != board or rel <= status["running"]:
            continue
        if status["last_release"] == rel and status["last_result"] in ("rolled back", "refused"):
            continue
        if rel in status.get("rolled_back", ()):  # rolled back here once, whatever came after
            continue
        if plan.startswith("line:") and line is None:
            line = _line(store, tid)
        if in_plan(plan, rel, tid, line):
            return rel
    return None


_STATUS_COLS = (
    "terminal board running state staged part last_release last_result reason via updated_at"
).split()


def status_of(store, tid):
    if not _have(store):
        return None
    """A terminal's last firmware status (None: never reported), with "rolled_back": every release
    it ever rolled back (a release that failed its self-test here is not offered again when the
    terminal has confirmed another since)."""
    row = store._one(
        "SELECT %s FROM fw_status WHERE terminal = ?" % ", ".join(_STATUS_COLS), (tid,)
    )
    if not row:
        return None
    s = dict(zip(_STATUS_COLS, row, strict=True))
    s["rolled_back"] = [
        int(r[0])
        for r in store._all(
            "SELECT DISTINCT release FROM fw_events WHERE terminal = ? AND result = ?",
            (tid, "rolled back"),
        )
    ]
    return s


def from_info(info):
    """A status from a terminal's info["ota"] list (IDENTIFY over USB, the TKO1 head over Wi-Fi)."""
    o = list(info.get("ota") or [0, 0, 0, 0, 0, ""]) + [0] * 6
    st, run, staged, last, res, why = o[:6]
    return {
        "board": info.get("board"),
        "running": int(run or 0),
        "state": release.STATES[st] if 0 <= st < len(release.STATES) else str(st),
        "staged": int(staged or 0),
        "part": int(info.get("ota_part", 0)),
        "last_release": int(last or 0),
        "last_result": release.RESULTS[res] if 0 <= res < len(release.RESULTS) else str(res),
        "reason": str(why or "")[:200],
    }


def note_status(store, tid, status, via="wifi"):
    """Keep a terminal's firmware status; a new result (confirmed, rolled back, refused) is also an
    event of the rollout's history."""
    ensure(store)
    now = int(time.time())
    old = status_of(store, tid)
    with store._tx():
        store._exec("DELETE FROM fw_status WHERE terminal = ?", (tid,))
        store._exec(
            "INSERT INTO fw_status (%s) VALUES (%s)"
            % (", ".join(_STATUS_COLS), ", ".join("?" * len(_STATUS_COLS))),
            (
                tid,
                status.get("board"),
                status["running"],
                status["state"],
                status["staged"],
                status["part"],
                status["last_release"],
                status["last_result"],
                status["reason"],
                via,
                now,
            ),
        )
        if status["last_result"] and (
            old is None
            or (old["last_release"], old["last_result"])
            != (status["last_release"], status["last_result"])
        ):
            store._exec(
                "INSERT INTO fw_events (at, terminal, release, result, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                (now, tid, status["last_release"], status["last_result"], status["reason"]),
            )


def fleet(store):
    """The fleet view: every terminal's firmware, each release's rollout progress, the failures."""
    if not _have(store):
        return {"terminals": [], "releases": [], "events": []}
    terms = [
        dict(zip(_STATUS_COLS, r, strict=True))
        for r in store._all("SELECT %s FROM fw_status ORDER BY terminal" % ", ".join(_STATUS_COLS))
    ]
    rels = []
    all_plans = plans(store)
    # a rollback stays one in the view when the terminal has since confirmed another release
    back = {}
    for rel, tid in store._all(
        "SELECT DISTINCT release, terminal FROM fw_events WHERE result = ?", ("rolled back",)
    ):
        back.setdefault(int(rel), set()).add(int(tid))
    for rel, board, plan in all_plans:
        mine = [t for t in terms if t["board"] == board]
        target = [
            t
            for t in mine
            if in_plan(
                plan, rel, t["terminal"], _line(store, t["terminal"]) if "line" in plan else 0
            )
        ]
        rels.append(
            {
                "release": rel,
                "board": board,
                "plan": plan,
                "targeted": len(target),
                "running": sum(1 for t in mine if t["running"] >= rel),
                "in_progress": sum(
                    1 for t in target if t["running"] < rel and t["state"] != "idle"
                ),
                "rolled_back": sum(1 for t in mine if t["terminal"] in back.get(rel, ())),
                "refused": sum(
                    1 for t in mine if t["last_release"] == rel and t["last_result"] == "refused"
                ),
            }
        )
    events = [
        dict(zip(("at", "terminal", "release", "result", "reason"), r, strict=True))
        for r in store._all(
            "SELECT at, terminal, release, result, reason FROM fw_events "
            "WHERE result != 'confirmed' ORDER BY at DESC LIMIT 100"
        )
    ]
    return {"terminals": terms, "releases": rels, "events": events}
