"""Heap each firmware module costs once imported on the VM (bytecode, qstrs, objects), in boot
order: harness/mp/heap_probe.py with the built .mpy (1 MB heap, so that nothing is collected); and
the heap every tap path leaves free at its peak on the 112 KB heap (harness/heap_paths.py: the
firmware's own taps on virtual terminals, taps while a host syncs over USB, a Wi-Fi board's too).

data: {"total": bytes, "modules": {module: bytes}, "paths": {path: {"alloc", "heap_used",
"heap_free"}}, "worst_path": {"path", "heap_free"}} (the path with the least free, USB and Wi-Fi included).
"""

import tempfile

from bench import row

SECTION = "heap"


def measure():
    from harness import vm

    with tempfile.TemporaryDirectory() as d:
        p = vm.run(
            vm.build(d),
            vm.script("heap_probe"),
            path=[vm.EMULATOR],
            heap="1M",
            timeout=60,
            check=True,
        )
    modules = {}
    for line in p.stdout.splitlines():
        name, _, n = line.rpartition(" ")
        if n.isdigit():
            modules[name] = int(n)
    total = modules.pop("total")
    return {"total": total, "modules": modules}


def measure_paths():
    from harness import heap_paths

    with tempfile.TemporaryDirectory() as d:
        paths = heap_paths.heap_paths(d)
        paths.update(heap_paths.usb_paths(d))
        paths.update(heap_paths.wifi_paths(d))
    return paths


def run(opts):
    from harness import heap_paths

    m = measure()
    m["paths"] = paths = measure_paths()
    m["worst_path"] = w = heap_paths.worst(paths)
    rows = [
        row(
            SECTION,
            "firmware: heap taken by importing all modules (.mpy)",
            m["total"],
            "B",
            "64-bit unix port; an ESP32 (32-bit) needs less",
        )
    ]
    rows += [row(SECTION, "  module %s" % k, v, "B") for k, v in m["modules"].items()]
    rows.append(
        row(
            SECTION,
            "worst tap path: heap free at its peak (%s)" % w["path"],
            w["heap_free"],
            "B",
            "of the 112 KB VM heap, garbage counted; >= 16,384 wanted (issue 15)",
        )
    )
    rows += [
        row(
            SECTION,
            "  path %s" % k,
            v["heap_free"],
            "B",
            "%d in use before the tap" % v["heap_used"],
        )
        for k, v in paths.items()
    ]
    if w["heap_free"] < 16 * 1024:
        m["fails"] = ["heap: %s leaves %d B free at its peak" % (w["path"], w["heap_free"])]
    return rows, m
