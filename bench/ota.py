"""Firmware updates (issue 17): the release bundle's size, update times over Wi-Fi and USB, the heap
of a tap during a download, and the power-cut campaign of an update
(harness/ota_cuts.py on the VM: the power cut at every flash write of an update, from the INSTALL
chunks to the confirm or the rollback; after each cut the terminal boots a whole set, old or new,
its journal intact, and takes a tap).

    python -m bench ota [--ota-cuts 1000] [--json]
    python -m bench ota --replay-ota SEED:K          (one failure id again)

Then the update's times on the virtual board (harness/ota_fleet.py): over Wi-Fi (publish to the
verified download, to the confirmed boot) and over USB paced at 115,200 baud (`tapkit release
install`'s transfer, to the confirmed boot), and the heap a tap leaves free while a Wi-Fi download
goes on (a tap in every chunk's exchange; 1 MB heap, figures of 112 KB as `python -m bench heap`).

data: {"bundle": {board: sealed bytes}, "files": {board: n}, "wifi_download_s", "wifi_update_s",
"usb_download_s", "usb_update_s", "download_heap_free" (the worst tap), "download_taps",
"idle_heap_free" (the same tap, no download), "cuts", "seeds", "writes": [flash writes of each
seed's update], "outcomes": {"confirmed": n, "rolled back": n}, "seconds", "fails": [replayable
failure ids "SEED:K"], "why": {id: what broke}}.
"""

import os
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
        if not replay:
            from harness import ota_fleet
            from host_tools import keystore

            ks = keystore.init(os.path.join(d, "issuer.keys"))
            data.update(ota_fleet.measure_wifi(d, ks))
            data.update(ota_fleet.measure_usb(d, ks))
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
    if "wifi_update_s" in data:
        rows += [
            row(
                SECTION,
                "update over Wi-Fi: publish to verified download",
                data["wifi_download_s"],
                "s",
                "virtual board, loopback, 1 s check-ins",
            ),  # fmt: skip
            row(
                SECTION,
                "update over Wi-Fi: publish to confirmed",
                data["wifi_update_s"],
                "s",
                "staged, trial boot, self-test, 3 boots",
            ),  # fmt: skip
            row(
                SECTION,
                "update over USB at 115,200 baud: transfer",
                data["usb_download_s"],
                "s",
                "tapkit release install",
            ),  # fmt: skip
            row(
                SECTION,
                "update over USB at 115,200 baud: to confirmed",
                data["usb_update_s"],
                "s",
                "after the host's 20 s sync_idle",
            ),  # fmt: skip
            row(
                SECTION,
                "tap during a Wi-Fi download: heap free at its peak",
                data["download_heap_free"],
                "B",
                "worst of %d taps, one per chunk (%d B without a download)"
                % (data["download_taps"], data["idle_heap_free"]),
            ),  # fmt: skip
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
