"""What a terminal is given: its identity, profile configuration and keys.

A terminal holds the issuer's *debit* master key (it diversifies each card's debit key itself, as a SAM
would), its own journal MAC key and its Wi-Fi wire key (both derived from the journal master key), and
its config key. It never holds the issuer's application master, credit or read keys.

    files = terminal_files(ks, terminal_id=1001, profile="bus", fare=25000, line=12)
    files["config.json"], files["keys.json"]     # JSON text to write onto the board
    files = terminal_files(ks, 1001, fares={"fares": {"7": 25000}, "conc": [100, 50, 30, 0]},
                           deny={"04a1b2c3d4e5f6": "block"}, lang="fa", unit="toman")
    files["fares.bin"], files["deny.bin"]        # signed blobs (bytes) for this terminal

config.json keys: terminal_id, profile (firmware/profile_<name>.py: "bus"), fare (the flat fare used
while no signed fare table is installed), line, stop, lang ("en" | "fa"), unit ("rial" | "toman"),
tariff_ver/deny_ver (the versions of the provisioned tables), config_ver, require_issuer_sig (default
true: a card without a valid issuer signature is refused; false: such a card rides while the
office signs the old cards, a card with a signature is still checked).
"""

import binascii
import json

from host_tools import keystore
from host_tools.fleet import tables

DEFAULTS = {
    "profile": "bus",
    "fare": 25000,
    "line": 1,
    "stop": 0,
    "tariff_ver": 1,
    "deny_ver": 0,
    "config_ver": 1,
    # refuse cards without the issuer's signature (card_schema.issuersig); false only while an
    # old fleet's cards are being signed (`tapkit card secure`, or their next top-up)
    "require_issuer_sig": True,
}


def terminal_config(terminal_id, **over):
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in over.items() if v is not None})
    cfg["terminal_id"] = int(terminal_id)
    return cfg


def terminal_keys(ks, terminal_id):
    """keys.json: the debit master key, the terminal's own keys and the issuer's *public* key
    (key id || RSA modulus: card_schema.issuersig), which checks the cards' signatures and can make
    none. A keystore without a signing key is refused (`tapkit keys upgrade`)."""
    return {
        "debit": binascii.hexlify(keystore.master_key(ks, "debit")).decode(),
        "journal": binascii.hexlify(keystore.terminal_key(ks, terminal_id)).decode(),
        "wire": binascii.hexlify(keystore.wire_key(ks, terminal_id)).decode(),
        "config": binascii.hexlify(keystore.config_key(ks, terminal_id)).decode(),
        "issuer": binascii.hexlify(keystore.issuer_public(ks)).decode(),
    }


def terminal_files(ks, terminal_id, fares=None, deny=None, **over):
    """The files of one terminal; `fares` (a fare table dict) and `deny` ({uid hex: action}) become
    signed blobs fares.bin / deny.bin with the versions tariff_ver / deny_ver (default 1)."""
    if fares is not None:
        over["tariff_ver"] = over.get("tariff_ver") or 1
    if deny is not None:
        over["deny_ver"] = over.get("deny_ver") or 1
    cfg = terminal_config(terminal_id, **over)
    files = {
        "config.json": json.dumps(cfg, indent=1),
        "keys.json": json.dumps(terminal_keys(ks, terminal_id)),
    }
    if fares is not None:
        files["fares.bin"] = tables.fares_blob(ks, terminal_id, cfg["tariff_ver"], fares)
    if deny is not None:
        files["deny.bin"] = tables.deny_blob(ks, terminal_id, cfg["deny_ver"], deny)
    return files
