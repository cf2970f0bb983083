"""The import rules of docs/architecture.md ("Where things live"), checked on the code's AST.

Every `import` counts, at module level or inside a function (a lazy import is still a dependency), as
does `importlib.import_module("name")` / `__import__("name")` with a literal name. A failure names the
file, the line and the import that breaks the rule.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("card_schema", "firmware", "boards", "mpybuild", "emulator", "host_tools")

# What each room may import of the project (its own package always). None: no limit here.
MAY_IMPORT = {
    "card_schema": (),
    "firmware": ("card_schema",),
    "boards": (),
    "mpybuild": ("boards",),
    "emulator": ("card_schema", "boards", "mpybuild"),
    "host_tools": ("card_schema", "boards", "mpybuild", "emulator"),
}
NOT_PRODUCT = ("harness", "bench", "tests")  # not installed: the product never imports them


def modules(root, packages=PACKAGES):
    """{module name: file} of every module of `packages` under `root` (package dirs only)."""
    out = {}
    for pkg in packages:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, pkg)):
            if "__init__.py" not in filenames:
                dirnames[:] = []  # data (boards/<board>/, boards/manifests/): not modules
                continue
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            rel = os.path.relpath(dirpath, root).replace(os.sep, ".")
            for f in filenames:
                if f.endswith(".py"):
                    name = rel if f == "__init__.py" else rel + "." + f[:-3]
                    out[name] = os.path.join(dirpath, f)
    return out


def imports(name, path, known):
    """[(line, imported name)] of one module; project modules resolved to the module imported
    (`from pkg import submodule` is an import of the submodule, as Python runs it)."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_pkg = path.endswith("__init__.py")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                sub = base + "." + a.name
                out.append((node.lineno, sub if sub in known else base))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            out.append((node.lineno, node.args[0].value))
    return out


def edges(root, packages=PACKAGES):
    """[(importer, imported, file, line)] over the project's modules (third-party names included)."""
    known = modules(root, packages)
    out = []
    for name, path in sorted(known.items()):
        for line, target in imports(name, path, known):
            out.append((name, target, os.path.relpath(path, root), line))
    return out


def _top(name):
    return name.split(".")[0]


def _in(name, prefix):
    return name == prefix or name.startswith(prefix + ".")


def violations(all_edges, packages=PACKAGES):
    bad = []
    for src, dst, path, line in all_edges:
        where = "%s:%d imports %s: " % (path, line, dst)
        room, target = _top(src), _top(dst)
        if target in NOT_PRODUCT:
            bad.append(where + "the product never imports the harness, bench or tests")
        if target in packages and target != room and target not in MAY_IMPORT[room]:
            allowed = ", ".join(MAY_IMPORT[room]) or "nothing of the project"
            bad.append(where + "%s may import only %s" % (room, allowed))
        if _in(dst, "host_tools.cli") and not _in(src, "host_tools.cli"):
            bad.append(where + "nothing outside host_tools.cli imports the CLI (it renders data)")
        if target == "rich" and src != "host_tools.cli.output":
            bad.append(where + "only host_tools/cli/output.py imports rich")
    return bad


def cycles(all_edges):
    """Strongly connected groups (more than one module) of the project's import graph (Tarjan)."""
    graph = {}
    for src, dst, _, _ in all_edges:
        graph.setdefault(src, set())
        graph.setdefault(dst, set())
        if src != dst:
            graph[src].add(dst)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _explain(group, all_edges):
    inside = set(group)
    return "\n".join(
        "    %s:%d imports %s" % (path, line, dst)
        for src, dst, path, line in all_edges
        if src in inside and dst in inside and src != dst
    )


def test_every_room_imports_only_what_it_may():
    bad = violations(edges(ROOT))
    assert not bad, "import rules broken (docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycles():
    all_edges = edges(ROOT)
    found = cycles(all_edges)
    assert not found, "import cycles:\n" + "\n".join(
        "  %s\n%s" % (" <-> ".join(g), _explain(g, all_edges)) for g in found
    )


def test_the_checker_sees_lazy_imports_and_cycles(tmp_path):
    """The rules above can fail: a firmware module importing host_tools inside a function, a module
    outside the CLI importing it, rich outside the output module and a two-module cycle are found."""
    files = {
        "firmware/__init__.py": "",
        "firmware/app.py": "def run():\n    from host_tools import keystore\n",
        "host_tools/__init__.py": "",
        "host_tools/keystore.py": "import rich\nfrom host_tools.cli import app\nimport harness.vm\n",
        "host_tools/cli/__init__.py": "",
        "host_tools/cli/app.py": "from host_tools import keystore\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    all_edges = edges(str(tmp_path))
    bad = violations(all_edges)
    assert (
        "firmware/app.py:2 imports host_tools.keystore: firmware may import only card_schema"
        in bad
    ), bad
    assert any(b.startswith("host_tools/keystore.py:2 imports host_tools.cli.app") for b in bad)
    assert any(b.startswith("host_tools/keystore.py:1 imports rich: only") for b in bad)
    assert any(
        b.startswith("host_tools/keystore.py:3 imports harness.vm: the product never") for b in bad
    )
    assert cycles(all_edges) == [["host_tools.cli.app", "host_tools.keystore"]]
