"""`tapkit release`: firmware releases a terminal updates itself from (host_tools/fleet/release.py).

    tapkit release build --board bus-validator --release 7 -o r7.tkr   # the board's .mpy set, hashed
    tapkit release show r7.tkr                                        # what it holds
    tapkit release install r7.tkr --port /dev/ttyUSB0                 # over USB (INSTALL chunks)
    tapkit release status --db URL                                    # the fleet's firmware
    tapkit publish --kind firmware r7.tkr --rollout percent:10        # for `tapkit serve`

The terminal verifies the bundle (sealed with its own config key), stages it beside the running
set at a safe moment, boots it on trial and confirms it by a self-test, or goes back by itself
(firmware/ota.py).
"""

from host_tools.cli.output import console, print_json, table
from host_tools.cli.spec import DB, KEYSTORE, Command, arg, port


def build(a):
    from host_tools.fleet import release

    payload = release.build(a.board, a.release, min_fares=a.min_fares, min_deny=a.min_deny)
    out = a.output or "%s-%d.tkr" % (a.board, a.release)
    release.write(out, payload)
    d = release.describe(payload)
    res = {k: d[k] for k in ("release", "board", "platform", "fw", "min_fares", "min_deny")}
    res.update(files=len(d["files"]), bytes=d["bytes"], output=out)
    if a.json:
        print_json(res)
    else:
        print(
            "release %d for %s (fw %s): %d files, %d bytes: %s"
            % (a.release, a.board, d["fw"], len(d["files"]), d["bytes"], out)
        )
    return 0


def show(a):
    from host_tools.fleet import release

    d = release.describe(release.read(a.file), a.file)
    if a.json:
        print_json(d)
        return 0
    title = "release %d for %s (%s), fw %s, needs fares >= %d, deny >= %d: %d bytes" % (
        d["release"],
        d["board"],
        d["platform"],
        d["fw"],
        d["min_fares"],
        d["min_deny"],
        d["bytes"],
    )
    rows = [(p, "{:,}".format(f["bytes"]), f["sha256"][:16]) for p, f in d["files"].items()]
    console(width=100).print(table(title, ["file", "bytes", "sha256"], rows, right=(1,)))
    return 0


def install(a):
    import time

    from host_tools import keystore
    from host_tools.fleet import ports, release
    from host_tools.fleet.link import SerialLink

    payload = release.read(a.file)
    where = ports.resolve_port(a.port)
    ks = keystore.load(a.keystore)
    t0 = time.monotonic()
    with SerialLink(where) as link:
        rel, st = release.install(link, ks, payload)
    res = {
        "port": where,
        "release": rel,
        "bytes": len(payload),
        "seconds": round(time.monotonic() - t0, 1),
        "ota": st,
        "status": release.status_text(st),
    }
    if a.json:
        print_json(res)
    else:
        print(
            "release %d sent to %s in %.1f s; the terminal stages it at its next safe moment, "
            "then boots it on trial" % (rel, where, res["seconds"])
        )
    return 0


def status(a):
    from host_tools.backoffice import releases
    from host_tools.backoffice import store as store_mod

    with store_mod.open_store(a.db, create=False) as db:
        view = releases.fleet(db)
    if a.json:
        print_json(view)
        return 0
    con = console(width=110)
    rows = [
        (
            r["release"],
            r["board"],
            r["plan"],
            "%d of %d" % (r["running"], r["targeted"]),
            r["in_progress"],
            r["rolled_back"],
            r["refused"],
        )
        for r in view["releases"]
    ]
    con.print(
        table(
            "rollouts",
            ["release", "board", "plan", "running", "in progress", "rolled back", "refused"],
            rows,
            right=(0, 3, 4, 5, 6),
        )
    )
    rows = [
        (
            t["terminal"],
            t["board"] or "-",
            t["running"] or "as flashed",
            t["state"] + (" %d" % t["staged"] if t["staged"] else ""),
            ("%s %s" % (t["last_release"], t["last_result"])) if t["last_result"] else "-",
            t["reason"] or "",
            t["via"],
        )
        for t in view["terminals"]
    ]
    con.print(
        table(
            "terminals",
            ["terminal", "board", "runs", "state", "last", "why", "via"],
            rows,
            right=(0,),
        )
    )
    return 0


_FILE = arg("file", help="a release file (.tkr, from `tapkit release build`)")
GROUPS = {"release": "firmware releases: build, show, status of the rollouts"}
COMMANDS = (
    Command(
        ("release", "build"),
        build,
        "build a firmware release for a board (its .mpy set, hashed)",
        (
            arg("--board", required=True, help="the board it is for (boards/<name>)"),
            arg("--release", type=int, required=True, help="its number (grows every release)"),
            arg("--min-fares", type=int, default=0, help="the oldest fare table it runs with"),
            arg("--min-deny", type=int, default=0, help="the oldest deny list it runs with"),
            arg("-o", "--output", help="the release file (default: BOARD-RELEASE.tkr)"),
        ),
    ),
    Command(("release", "show"), show, "print what a release file holds", (_FILE,)),
    Command(
        ("release", "install"),
        install,
        "send a release to one terminal over USB (sealed for it, INSTALL chunks, resumable)",
        (_FILE, port(), KEYSTORE),
    ),
    Command(
        ("release", "status"),
        status,
        "the fleet's firmware: versions per terminal, rollout progress, rollbacks",
        (DB,),
    ),
)
