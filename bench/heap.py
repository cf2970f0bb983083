"""Heap each firmware module costs once imported on the VM (bytecode, qstrs, objects), in boot
order: harness/mp/heap_probe.py with the built .mpy (1 MB heap, so that nothing is collected).

data: {"total": bytes, "modules": {module: bytes}}.
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


def run(opts):
    m = measure()
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
    return rows, m
