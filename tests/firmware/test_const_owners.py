"""Values card_schema owns, copied into firmware modules as compile-time consts, held to their owner.

A private `_NAME = const(value)` is folded into the bytecode: on the board it costs no heap and no
qstr, while `module.NAME` costs a name in the owner's globals and in the qstr pool (a Wi-Fi board
sits a few qstrs below the next pool allocation, ~7 KB on the VM). So the firmware copies the codes
and formats it compares or packs, and every copy names its owner in a trailing comment:

    _WAIT = const(-3)  # = card_schema.profile.WAIT

This test holds every tagged copy to its owner, refuses a tag that names nothing, and refuses an
untagged const that has the name and the value of an owner's constant (a copy that forgot its tag).
"""

import ast
import importlib
import io
import os
import re
import tokenize

import card_schema
from card_schema import profile_host

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAG = re.compile(r"#\s*=\s*(card_schema\.\w+)\.(\w+)")
SOURCES = sorted(
    os.path.join(pkg, n)
    for pkg in ("firmware", "card_schema")
    for n in os.listdir(os.path.join(ROOT, pkg))
    if n.endswith(".py")
)


def _consts(rel):
    """[(line, name, value, tag or None)] of the module-level `NAME = const(literal)` of a module."""
    src = open(os.path.join(ROOT, rel)).read()
    comments = {
        t.start[0]: t.string
        for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type == tokenize.COMMENT
    }
    out = []
    for node in ast.parse(src).body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "const"
        ):
            continue
        try:
            value = ast.literal_eval(node.value.args[0])
        except ValueError:
            continue  # an expression of other consts: not a copy
        m = TAG.search(comments.get(node.end_lineno, ""))
        out.append((node.lineno, node.targets[0].id, value, m and (m.group(1), m.group(2))))
    return out


def _owner_constants():
    """{NAME: [(module, value)]} of the public constants of every card_schema module."""
    out = {}
    for n in sorted(os.listdir(os.path.dirname(card_schema.__file__))):
        if n.endswith(".py") and n != "__init__.py":
            mod = importlib.import_module("card_schema." + n[:-3])
            for k, v in vars(mod).items():
                if k.isupper() and isinstance(v, (int, bytes, str, tuple)):
                    out.setdefault(k, []).append((mod.__name__, v))
    return out


def test_every_tagged_copy_equals_its_owner():
    checked = 0
    wrong = []
    for rel in SOURCES:
        for line, name, value, tag in _consts(rel):
            if tag is None:
                continue
            mod = importlib.import_module(tag[0])
            assert hasattr(mod, tag[1]), "%s:%d: %s.%s does not exist" % (rel, line, *tag)
            if getattr(mod, tag[1]) != value:
                wrong.append(
                    "%s:%d: %s = %r, but %s.%s = %r"
                    % (rel, line, name, value, tag[0], tag[1], getattr(mod, tag[1]))
                )
            checked += 1
    assert not wrong, "\n".join(wrong)
    assert checked >= 30  # the profile codes, price codes, trip fields, frame and upload formats


def test_no_untagged_copy_of_an_owned_constant():
    owners = _owner_constants()
    untagged = []
    for rel in SOURCES:
        if rel.startswith("card_schema"):
            continue  # the owners themselves
        for line, name, value, tag in _consts(rel):
            same = [m for m, v in owners.get(name.lstrip("_"), ()) if v == value]
            if tag is None and same:
                untagged.append(
                    "%s:%d: %s copies %s.%s: tag it" % (rel, line, name, same[0], name.lstrip("_"))
                )
    assert not untagged, "\n".join(untagged)


def test_each_profile_module_declares_the_code_of_its_name():
    for name in profile_host.PROFILES:
        consts = {n: v for _, n, v, _ in _consts("firmware/profile_%s.py" % name)}
        assert consts["PROFILE"] == profile_host.code(name), name
