"""A throwaway PostgreSQL server for the tests and `make bench` (no system service, 127.0.0.1 only).

    srv = PGServer.start()           # initdb in a temp dir, postgres on a free port
    url = srv.create_database()      # a fresh database per test: postgresql://postgres@127.0.0.1:P/db
    srv.stop()                       # immediate shutdown, temp dir removed

initdb refuses to run as root, so when the tests run as root the server runs as the `postgres` user
(`runuser -u postgres`) in a temp dir owned by it. Set TAPKIT_PG_BIN to use other binaries.
Raises PGUnavailable when PostgreSQL cannot be started here (callers skip those tests).
"""

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile


class PGUnavailable(Exception):
    pass


def _bin_dir():
    d = os.environ.get("TAPKIT_PG_BIN")
    if d:
        return d
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(initdb)
    raise PGUnavailable("no PostgreSQL binaries (initdb) found")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PGServer:
    _names = itertools.count(1)

    def __init__(self, bindir, root, port, as_user):
        self.bindir = bindir
        self.root = root
        self.port = port
        self.as_user = as_user
        self.data = os.path.join(root, "data")

    def _run(self, *argv, check=True):
        cmd = [os.path.join(self.bindir, argv[0])] + list(argv[1:])
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--"] + cmd
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise PGUnavailable(f"{argv[0]} failed: {(p.stderr or p.stdout).strip()[-500:]}")
        return p

    @classmethod
    def start(cls):
        bindir = _bin_dir()
        as_user = None
        root = tempfile.mkdtemp(prefix="tapkit-pg-")
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(root, ignore_errors=True)
                raise PGUnavailable("running as root and there is no postgres user for initdb")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            os.chmod(root, 0o755)
            as_user = "postgres"
        srv = cls(bindir, root, _free_port(), as_user)
        try:
            srv._run(
                "initdb",
                "-D",
                srv.data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            )
            opts = (
                f"-p {srv.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            srv._run(
                "pg_ctl",
                "-D",
                srv.data,
                "-o",
                opts,
                "-l",
                os.path.join(root, "log"),
                "-w",
                "-t",
                "60",
                "start",
            )
        except (PGUnavailable, OSError, subprocess.SubprocessError) as e:
            srv.stop()
            raise PGUnavailable(str(e))
        return srv

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self, name=None):
        import psycopg

        name = name or f"tapkit_test_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
