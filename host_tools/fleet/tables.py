"""Fare tables and deny lists for terminals: sign them for one terminal, check a signed blob (the
library of `tapkit tariff sign|show`, `tapkit publish` and provisioning).

Inputs are JSON. A fare table is the object described in card_schema/tariff.py (checked the way the
firmware reads it). A deny list is an object {UID hex (7 bytes): "refuse" | "block"} ("remove" too in a
delta). Blobs are signed with the terminal's own config key (keystore.config_key), so a blob signed for
one terminal is refused by every other; install them with the sync tools (INSTALL) or `provision`.

Library: `fares_blob(ks, terminal_id, version, table)`, `deny_blob(ks, terminal_id, version, entries,
delta=False)`, `read_blob(ks, terminal_id, blob)`.
"""

import binascii
import io
import json

from card_schema import signed, signed_host, tariff
from host_tools import TapkitError, keystore

ACTIONS = {"refuse": tariff.ACTION_REFUSE, "block": tariff.ACTION_BLOCK}
KINDS = signed_host.KINDS  # --kind spelling -> signed.KIND_*


class TariffError(TapkitError):
    pass


def _key(ks, terminal_id):
    if "config" not in ks.get("keys", {}):
        raise TariffError(
            "the keystore has no config key: create it with a newer `tapkit keys init`"
        )
    return keystore.config_key(ks, int(terminal_id))


def _version(version):
    if not 0 < int(version) < 0x10000:
        raise TariffError("version %s out of range: 1..65535 (tap records keep 16 bits)" % version)
    return int(version)


def _seconds(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def fares_payload(table):
    payload = json.dumps(table, separators=(",", ":"), sort_keys=True).encode()
    try:
        tariff.fare_table(payload)
    except ValueError as e:
        raise TariffError(str(e))
    # what the firmware's profiles read without checking (host-side only: no RAM on the terminal)
    if not _seconds(table.get("refund", 0)):
        raise TariffError(
            "fare table: refund is the POS refund window in seconds, an integer >= 0"
        )
    zones = table.get("zones", {})
    for z, rule in list(zones.items() if isinstance(zones, dict) else []) + [("", table)]:
        if isinstance(rule, dict) and not _seconds(rule.get("prepaid", 0)):
            raise TariffError(
                "fare table: prepaid%s is parking minutes paid at tap in, an integer >= 0"
                % (" of zone %s" % z if z else "")
            )
    return payload


def deny_payload(entries, delta=False):
    """entries: {uid hex or bytes: action name or number}."""
    acts = dict(ACTIONS, remove=tariff.ACTION_REMOVE) if delta else ACTIONS
    out = {}
    for uid, act in entries.items():
        try:
            u = binascii.unhexlify(uid.replace(":", "")) if isinstance(uid, str) else bytes(uid)
        except (binascii.Error, ValueError):
            raise TariffError("deny list: %r is not a UID in hex" % uid)
        if len(u) != 7:
            raise TariffError("deny list: UID %s is not 7 bytes" % uid)
        a = acts.get(act, act) if isinstance(act, str) else act
        if a not in acts.values():
            raise TariffError(
                "deny list: action %r for %s: one of %s" % (act, uid, ", ".join(acts))
            )
        out[u] = a
    return tariff.pack_deny(out)


def fares_blob(ks, terminal_id, version, table):
    return signed.seal(
        _key(ks, terminal_id), signed.KIND_FARES, _version(version), fares_payload(table)
    )


def deny_blob(ks, terminal_id, version, entries, delta=False):
    kind = signed.KIND_DENY_DELTA if delta else signed.KIND_DENY
    return signed.seal(
        _key(ks, terminal_id), kind, _version(version), deny_payload(entries, delta)
    )


def read_blob(ks, terminal_id, blob):
    """Verify a blob for this terminal; return a dict describing it."""
    try:
        kind, version, payload = signed.verify(_key(ks, terminal_id), blob)
        tariff.check(kind, io.BytesIO(payload), len(payload))
    except ValueError as e:
        raise TariffError("not a valid blob for terminal %s: %s" % (terminal_id, e))
    d = {
        "kind": signed_host.CLI_NAMES.get(kind, kind),
        "version": version,
        "terminal_id": int(terminal_id),
    }
    if kind == signed.KIND_FARES:
        d["table"] = json.loads(payload)
    else:
        n = tariff.deny_count(payload)
        names = {v: k for k, v in dict(ACTIONS, remove=tariff.ACTION_REMOVE).items()}
        d["entries"] = {
            binascii.hexlify(payload[4 + i * 8 : 11 + i * 8]).decode(): names.get(
                payload[11 + i * 8], payload[11 + i * 8]
            )
            for i in range(n)
        }
    return d


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise TariffError("cannot read %s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise TariffError("%s is not JSON: %s" % (path, e))


def check_shape(kind, data, path):
    """A fare table or deny list file holds a JSON object (what `kind` says it is)."""
    if not isinstance(data, dict):
        if kind == "fares":
            raise TariffError("%s: a fare table is a JSON object" % path)
        raise TariffError("%s: a deny list is a JSON object {uid hex: action}" % path)
    return data


def payload_from_file(kind, path):
    """The checked payload of a fare table or deny list JSON file (`tariff sign`, `publish`)."""
    data = check_shape(kind, load_json(path), path)
    if kind == "fares":
        return fares_payload(data)
    return deny_payload(data, delta=kind == "deny-delta")


def blob_from_file(ks, terminal_id, kind, version, path):
    """A fare table or deny list JSON file, checked and signed for one terminal (`tariff sign`)."""
    data = check_shape(kind, load_json(path), path)
    if kind == "fares":
        return fares_blob(ks, terminal_id, version, data)
    return deny_blob(ks, terminal_id, version, data, delta=kind == "deny-delta")


def read_blob_file(ks, terminal_id, path):
    """read_blob of a blob file (`tariff show`)."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise TariffError("cannot read %s: %s" % (path, e.strerror or e))
    return read_blob(ks, terminal_id, blob)
