"""Deny-list entries for cards whose state went back (a restored card image, a clone): the ledger's
clone findings, with the money lost, become entries of the next deny list (action block: every
terminal refuses the card and marks it, firmware/app.py), proposed to the operator or published by
the audit itself when the store's setting says so.

    proposal(store)          -> {"cards": [{uid, lost, text, listed}], "new": [uid...], "version"}
    publish(store)           -> the deny-list version published, or None when nothing is new
    mode(store) / set_mode(store, "propose" | "auto")    settings "clone_deny" (default propose)

The published list is the newest published deny list (`tapkit publish --kind deny`) plus the new
UIDs, as a new version: terminals get it at their next sync or upload like any published table.
"""

from card_schema import signed, tariff

MODES = ("propose", "auto")


def mode(store):
    r = store._one("SELECT value FROM settings WHERE name = 'clone_deny'")
    return r[0] if r else "propose"


def set_mode(store, m):
    if m not in MODES:
        raise ValueError("clone_deny: one of %s" % ", ".join(MODES))
    with store._tx():
        store._exec(
            "INSERT INTO settings (name, value) VALUES ('clone_deny', ?) ON CONFLICT (name) "
            "DO UPDATE SET value = excluded.value",
            (m,),
        )


def _current(store):
    """(version, {uid bytes: action}) of the newest published deny list (0, {} when none)."""
    got = store.latest_configs().get(signed.KIND_DENY)
    if not got:
        return 0, {}
    version, payload = got
    n = tariff.deny_count(payload)
    out = {}
    for i in range(n):
        e = payload[4 + i * tariff.DENY_ENTRY : 4 + (i + 1) * tariff.DENY_ENTRY]
        out[bytes(e[:7])] = e[7]
    return version, out


def proposal(store):
    """The clone and minted findings (ledger.minted: value a stolen debit key made) of the audited
    store and which of their cards the deny list lacks."""
    import json

    version, listed = _current(store)
    cards = {}
    for uid, amount, detail in store._all(
        "SELECT uid, amount, detail FROM findings WHERE kind IN ('clone', 'minted') ORDER BY uid"
    ):
        c = cards.setdefault(uid, {"uid": uid, "lost": 0, "text": "", "listed": False})
        c["lost"] += int(amount)
        c["text"] = json.loads(detail).get("text", "clone")
        c["listed"] = bytes.fromhex(uid) in listed
    return {
        "cards": list(cards.values()),
        "new": [u for u, c in cards.items() if not c["listed"]],
        "version": version,
    }


def publish(store):
    """Publish the newest deny list plus the proposal's new cards (action block) as the next
    version; returns it, or None when every cloned card is listed already."""
    p = proposal(store)
    if not p["new"]:
        return None
    version, listed = _current(store)
    for uid in p["new"]:
        listed[bytes.fromhex(uid)] = tariff.ACTION_BLOCK
    store.put_config(signed.KIND_DENY, version + 1, tariff.pack_deny(listed))
    return version + 1


def auto(store):
    """What the audit calls after settling: publish when the setting is "auto"."""
    return publish(store) if mode(store) == "auto" else None
