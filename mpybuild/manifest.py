"""Firmware manifests, micropython-lib style: which modules a board's filesystem gets.

A manifest is a Python file exec'd with three functions (the names of MicroPython's manifest.py):

    include("common.py")                          another manifest, relative to this one
    package("card_schema", exclude=("*_host.py",)) every module of an installed package, or files=(...)
    module("hal_esp32.py", package="firmware")    one module of a package (lib/firmware/hal_esp32.mpy)
    module("extra.py")                            a module next to the manifest (lib/extra.mpy)

Each platform has one (boards/manifests/<platform>.py); a board directory may add its own
(boards/<board>/manifest.py, which includes its platform's). Packages are found through importlib,
never through a source checkout's layout, so a wheel install builds the same files.

    entries = for_board("taxi-unit")     # [Entry(dest="lib/firmware/app.mpy", source=..., name=...)]
"""

import collections
import fnmatch
import os

import boards
from mpybuild import BuildError, package_dir

Entry = collections.namedtuple("Entry", "dest source name")  # name: the source name in tracebacks


class Manifest:
    def __init__(self):
        self.entries = {}  # dest -> Entry, in the order first named
        self._dirs = []

    def _add(self, dest, source, name):
        if not os.path.isfile(source):
            raise BuildError("manifest in %s names %s: no such file" % (self._where(), source))
        self.entries.setdefault(dest, Entry(dest, source, name))

    def _where(self):
        return self._dirs[-1] if self._dirs else "?"

    def include(self, path):
        base = self._dirs[-1] if self._dirs else os.getcwd()
        self.load(os.path.join(base, path))

    def package(self, name, files=None, exclude=()):
        src = package_dir(name)
        if files is None:
            files = sorted(
                f
                for f in os.listdir(src)
                if f.endswith(".py") and not any(fnmatch.fnmatch(f, x) for x in exclude)
            )
        for f in files:
            self.module(f, package=name)

    def module(self, file, package=None, base_path="."):
        stem = file[:-3] if file.endswith(".py") else file
        if package:
            src = os.path.join(package_dir(package), stem + ".py")
            self._add("lib/%s/%s.mpy" % (package, stem), src, "%s/%s.py" % (package, stem))
        else:
            src = os.path.join(self._dirs[-1], base_path, stem + ".py")
            self._add("lib/%s.mpy" % stem, src, stem + ".py")

    def load(self, path):
        path = os.path.abspath(path)
        try:
            with open(path) as f:
                code = compile(f.read(), path, "exec")
        except OSError as e:
            raise BuildError("cannot read manifest %s: %s" % (path, e.strerror or e)) from None
        self._dirs.append(os.path.dirname(path))
        try:
            exec(code, {"include": self.include, "package": self.package, "module": self.module})
        finally:
            self._dirs.pop()
        return self


def load(path):
    """[Entry] named by the manifest file at `path`."""
    return list(Manifest().load(path).entries.values())


def for_board(board):
    """[Entry] a board gets: boards/<board>/manifest.py, else its platform's manifest."""
    return load(boards.manifest(board))


def every_module(*packages):
    """[Entry] of every module of `packages` (host-only ones too): the tests' build."""
    m = Manifest()
    for p in packages:
        m.package(p)
    return list(m.entries.values())
