"""Issuer keystore: the master keys of each card key role and of the terminal journals.

A keystore is a JSON file created 0600 and never overwritten. Keys never leave this module in logs,
traces or --json output: callers get derived keys only.

    ks = keystore.init("issuer.keys", issuer_id=1)      # refuses an existing file
    ks = keystore.load("issuer.keys")
    k = keystore.card_key(ks, "debit", uid)              # AN10922-diversified for this card
    p = keystore.picc_key(ks, uid)                       # the card's PICC master key (issue)
    t = keystore.terminal_key(ks, 1001)                  # the terminal's journal MAC key
    o = keystore.office_key(ks, 9001)                    # a card office's journal MAC key
    pub = keystore.issuer_public(ks)                     # key id || RSA modulus: for terminals
    sig = keystore.issuer_sign(ks, digest)               # the card office signs a card (issuersig)

The issuer's signing key (RSA-2048, e = 65537: card_schema.issuersig) is the keystore's "sign"
entry, {"id": key id, "pem": PKCS#8}; a keystore made before it still loads, and the operations
that sign say `tapkit keys upgrade`, which adds it.
"""

import binascii
import json
import os
import struct

from card_schema import citizen, citizen_host
from card_schema.compat import urandom
from card_schema.crypto_host import cmac_fast
from host_tools import TapkitError

FIRST_ROLES = citizen_host.ROLE_NAMES + ("journal", "config")  # every keystore file has these
# Roles added after the first keystores were made: a keystore without one still loads (the
# operations that need it say how to add it: `tapkit keys upgrade`). "picc": the issuer's PICC master
# key, diversified per card, that card issue puts on the card in place of the factory key.
LATER_ROLES = ("picc",)
ROLES = FIRST_ROLES + LATER_ROLES  # what `keys init` makes


class KeystoreError(TapkitError):
    pass


SIGN_BITS = 2048  # card_schema.issuersig checks RSA-2048 signatures


def new_sign_key(kid=1):
    """A fresh issuer signing key entry {"id", "pem"} (as a loaded keystore holds it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=SIGN_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {"id": kid, "pem": pem}


def _sign_doc(kid=1):
    e = new_sign_key(kid)
    return {"id": e["id"], "pem": e["pem"].decode()}


def init(path, issuer_id=1):
    keys = {role: binascii.hexlify(urandom(16)).decode() for role in ROLES}
    doc = {"version": 1, "issuer_id": issuer_id, "keys": keys, "sign": _sign_doc()}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeystoreError("keystore %s already exists: refusing to overwrite issuer keys" % path)
    except OSError as e:
        raise KeystoreError("cannot create keystore %s: %s" % (path, e.strerror))
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
    return load(path)


def load(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise KeystoreError(
            "no keystore at %s: create one with `tapkit keys init --keystore %s`" % (path, path)
        )
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise KeystoreError("keystore %s is not a keystore (not JSON: %s)" % (path, e))
    except OSError as e:
        raise KeystoreError("cannot read keystore %s: %s" % (path, e.strerror or e))
    try:
        keys = {r: binascii.unhexlify(doc["keys"][r]) for r in FIRST_ROLES}
        keys.update(
            {r: binascii.unhexlify(doc["keys"][r]) for r in LATER_ROLES if r in doc["keys"]}
        )
        issuer_id = int(doc.get("issuer_id", 1))
        short = [r for r in keys if len(keys[r]) != 16]
    except (KeyError, ValueError, TypeError, AttributeError, binascii.Error) as e:
        what = "no %s key" % e if isinstance(e, KeyError) else "bad content"
        raise KeystoreError("keystore %s is damaged or incomplete (%s)" % (path, what))
    if short:
        raise KeystoreError(
            "keystore %s is damaged: the %s key is not 16 bytes" % (path, ", ".join(short))
        )
    ks = {"issuer_id": issuer_id, "keys": keys, "path": path}
    sign = doc.get("sign")
    if sign is not None:
        try:
            ks["sign"] = {"id": int(sign["id"]), "pem": sign["pem"].encode()}
        except (KeyError, ValueError, TypeError, AttributeError):
            raise KeystoreError("keystore %s is damaged (bad signing key entry)" % path)
    return ks


def diversify_aes128(master_key, div_input):
    """card_schema.crypto.diversify_aes128 (AN10922: AES-CMAC of 0x01 || M) at C speed: a server
    derives the keys of thousands of terminals."""
    if not 0 < len(div_input) <= 31:
        raise ValueError("diversification input must be 1..31 bytes")
    return cmac_fast(master_key, b"\x01" + bytes(div_input))


def upgrade(path):
    """Add the roles of LATER_ROLES a keystore lacks (fresh random keys; the existing keys are
    kept byte for byte). The new file is written 0600 beside it and renamed over it. Returns the
    roles added (empty: nothing to do, the file is untouched)."""
    ks = load(path)
    with open(path) as f:
        doc = json.load(f)
    added = [r for r in LATER_ROLES if r not in ks["keys"]]
    if "sign" not in ks:
        added.append("sign")
    if not added:
        return []
    for r in added:
        if r == "sign":
            doc["sign"] = _sign_doc()
        else:
            doc["keys"][r] = binascii.hexlify(urandom(16)).decode()
    tmp = path + ".new"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise KeystoreError("cannot upgrade keystore %s: %s" % (path, e.strerror))
    return added


def picc_key(ks, uid):
    """The card's PICC master key (AES): the issuer's "picc" key diversified for this UID."""
    if "picc" not in ks["keys"]:
        raise KeystoreError(
            "keystore %s has no PICC key (made before tapkit secured cards): add it with "
            "`tapkit keys upgrade --keystore %s`" % (ks.get("path"), ks.get("path"))
        )
    return diversify_aes128(ks["keys"]["picc"], citizen_host.picc_div_input(uid))


def _sign_entry(ks):
    if "sign" not in ks:
        raise KeystoreError(
            "keystore %s has no issuer signing key (made before cards were signed): add it with "
            "`tapkit keys upgrade --keystore %s`" % (ks.get("path"), ks.get("path"))
        )
    return ks["sign"]


def _private(ks):
    from cryptography.hazmat.primitives import serialization

    e = _sign_entry(ks)
    key = e.get("_key")
    if key is None:  # parsed once per loaded keystore
        key = e["_key"] = serialization.load_pem_private_key(e["pem"], password=None)
    return key


def issuer_public(ks):
    """What a terminal holds to check card signatures: key id (1 byte) || RSA modulus (256 bytes,
    big endian); e is 65537 (card_schema.issuersig)."""
    n = _private(ks).public_key().public_numbers().n
    return bytes((_sign_entry(ks)["id"],)) + n.to_bytes(SIGN_BITS // 8, "big")


def issuer_key_id(ks):
    return _sign_entry(ks)["id"]


def issuer_sign(ks, digest):
    """RSASSA-PKCS1-v1_5 signature (SHA-256, `digest` already hashed) with the issuer key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    return _private(ks).sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def master_key(ks, role):
    """The issuer master key of a role (for provisioning a terminal's debit key only)."""
    return ks["keys"][role]


def card_key(ks, role, uid):
    """The key of `role` on the card with this UID (AN10922 diversification)."""
    return diversify_aes128(ks["keys"][role], citizen.div_input(uid))


def config_key(ks, terminal_id):
    """The key that signs fare tables and deny lists for one terminal (card_schema.signed)."""
    return diversify_aes128(ks["keys"]["config"], b"CONF" + struct.pack("<I", terminal_id))


def terminal_key(ks, terminal_id):
    """The journal MAC key of one terminal: diversified from the journal master key."""
    return diversify_aes128(ks["keys"]["journal"], b"TERM" + struct.pack("<I", terminal_id))


def office_key(ks, office_id):
    """The journal MAC key of one card office (host_tools/cardoffice/journal.py): diversified from
    the journal master key like a terminal's, under another label, so an office's records never
    verify as a terminal's (a terminal's extracted key cannot forge a top-up) and back."""
    return diversify_aes128(ks["keys"]["journal"], b"OFFC" + struct.pack("<I", office_id))


def source_key(ks, source_id, role="terminal"):
    """The journal key of a source of the store: a terminal or a card office."""
    return office_key(ks, source_id) if role == "office" else terminal_key(ks, source_id)


def wire_key(ks, terminal_id):
    """The key that encrypts one terminal's Wi-Fi traffic (card_schema/upload.py): from the journal
    master key too, diversified apart from the MAC key (one key, one job)."""
    return diversify_aes128(ks["keys"]["journal"], b"WIRE" + struct.pack("<I", terminal_id))
