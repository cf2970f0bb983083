"""`tapkit serve` as its own process for the load test and the sync bench: started on a free port
of 127.0.0.1, its URL read from the first JSON line it prints."""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(url, ks_path, terminals, workers, stderr=subprocess.DEVNULL):
    """(process, base URL) of a serve for terminals 1..`terminals` with `workers` processes."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host_tools.cli",
            "serve",
            "--db",
            url,
            "--keystore",
            ks_path,
            "--listen",
            "127.0.0.1:0",
            "--terminals",
            "1-%d" % terminals,
            "--workers",
            str(workers),
            "--no-access-log",
            "--json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    base = json.loads(p.stdout.readline())["url"]
    time.sleep(1.0)  # the workers start after the socket is bound
    return p, base
