"""What a terminal is given: its identity, profile configuration and keys.

A terminal holds the issuer's *debit* master key (it diversifies each card's debit key itself, as a SAM
would) and its own journal MAC key derived from the journal master key. It never holds the issuer's
application master, credit or read keys.

    files = terminal_files(ks, terminal_id=1001, profile="bus", fare=25000, line=12)
    files["config.json"], files["keys.json"]     # JSON text to write onto the board
"""

import binascii
import json

from host_tools import keystore

DEFAULTS = {
    "profile": "bus",
    "fare": 25000,
    "line": 1,
    "stop": 0,
    "tariff_ver": 1,
    "deny_ver": 0,
    "config_ver": 1,
}


def terminal_config(terminal_id, **over):
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in over.items() if v is not None})
    cfg["terminal_id"] = int(terminal_id)
    return cfg


def terminal_keys(ks, terminal_id):
    return {
        "debit": binascii.hexlify(keystore.master_key(ks, "debit")).decode(),
        "journal": binascii.hexlify(keystore.terminal_key(ks, terminal_id)).decode(),
        "config": binascii.hexlify(keystore.config_key(ks, terminal_id)).decode(),
    }


def terminal_files(ks, terminal_id, **over):
    return {
        "config.json": json.dumps(terminal_config(terminal_id, **over), indent=1),
        "keys.json": json.dumps(terminal_keys(ks, terminal_id)),
    }


def deploy_virtual(fs_dir, ks, terminal_id, **over):
    """Build the firmware into a virtual board's filesystem and provision it."""
    import os

    from host_tools.build import build

    build(fs_dir)
    for name, text in terminal_files(ks, terminal_id, **over).items():
        path = os.path.join(fs_dir, name)
        with open(path + ".new", "w") as f:
            f.write(text)
        os.replace(path + ".new", path)
