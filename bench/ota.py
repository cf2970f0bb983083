"""Firmware updates (issue 17): the release bundle's size, and the power-cut campaign of an update
(harness/ota_cuts.py on the VM: the power cut at every flash write of an update, from the INSTALL
chunks to the confirm or the rollback; after each cut the terminal boots a whole set, old or new,
its journal intact, and takes a tap).

    python -m bench ota [--ota-cuts 1000] [--json]
    python -m bench ota --replay-ota SEED:K          (one failure id again)

data: {"bundle": {board: sealed bytes}, "files": {board: n}, "cuts", "seeds", "writes": [flash
writes of each seed's update], "outcomes": {"confirmed": n, "rolled back": n}, "seconds",
"fails": [replayable failure ids "SEED:K"], "why": {id: what broke}}.
"""

import tempfile
import time

from bench import row

SECTION = "ota"


def run(opts):
    from harness import ota_cuts
    from host_tools.fleet import release

    data = {"bundle": {}, "files": {}}
    for board in ("unix-virtual", "esp32-devkitc"):
        r = release.describe(release.build(board, 2))
        data["bundle"][board] = r["sealed_bytes"]
        data["files"][board] = len(r["files"])
    with tempfile.TemporaryDirectory() as d:
        replay = getattr(opts, "replay_ota", None)
        if replay:
            fails = ota_cuts.replay(d, replay)
            data.update(
                cuts=1, fails=[f["id"] for f in fails], why={f["id"]: f["fail"] for f in fails}
            )
        else:
            t0 = time.monotonic()
            c = ota_cuts.campaign(d, cuts=getattr(opts, "ota_cuts", 1000))
            c["seconds"] = round(time.monotonic() - t0, 1)
            data.update(c)
    rows = [
        row(SECTION, "release bundle, sealed (%s)" % b, n, "B", "%d files" % data["files"][b])
        for b, n in data["bundle"].items()
    ]
    rows.append(
        row(
            SECTION,
            "update power cuts survived (every flash write of an update)",
            data["cuts"],
            "cuts",
            "%d seeds; %s"
            % (
                data.get("seeds", 1),
                ", ".join("%s %d" % kv for kv in sorted(data.get("outcomes", {}).items())),
            ),
        )
    )
    rows.append(row(SECTION, "update power cuts failed", len(data["fails"]), "", "0 wanted"))
    rows += [
        row(SECTION, "  FAILED (replay: python -m bench ota --replay-ota ID)", None, "", f)
        for f in data["fails"]
    ]
    return rows, data
