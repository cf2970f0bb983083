"""Deny-list entries for cards whose state went back (a restored card image, a clone): the ledger's
clone findings, with the money lost, become entries of the next deny list (action block: every
terminal refuses the card and marks it, firmware/app.py), proposed to the operator or published by
the audit itself when the store's setting says so.

    proposal(store)          -> {"cards": [{uid, lost, text, listed}], "new": [uid...], "version"}
    publish(store)           -> the deny-list version published, or None when nothing is new
    mode(store) / set_mode(store, "propose" | "auto")    settings "clone_deny" (default propose)

The published list is the newest published deny list (`tapkit publish --kind deny`, with the newest
delta list over it) plus the new UIDs, as a new version: terminals get it at their next sync or upload
like any published table.

What a terminal is sent (USB sync: store.missing_configs; Wi-Fi: ingest's config chunks):

    offer(latest, versions, payload, cache)  -> [(kind, version, payload)] of deny lists to install

A terminal keeps one full list (deny.bin) and one delta list over it (deny_delta.bin, looked up
first), and a replacement is staged beside the file it replaces: on a DevKitC's 1.5 MB vfs a second
100,000-card list (800 KB) does not fit beside the first. So a terminal whose full list is not the
newest is sent a delta computed from the list it holds (its deny_ver, kept in the store: published
versions are never deleted) to the newest (the newest full list with the newest delta over it),
signed as a delta of the newest version, whenever that is smaller than the newest full list; else
the full list (and the newest delta after it). A version names one list whichever kind carries it:
deny and deny-delta versions only grow, across both kinds (check_version, `tapkit publish`).
"""

from card_schema import signed, tariff
from host_tools import TapkitError

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


KINDS = (signed.KIND_DENY, signed.KIND_DENY_DELTA)
_CACHE = 8  # computed deltas kept (a Wi-Fi download asks for one per exchange)


def entries(payload):
    """{uid bytes: action} of a deny-list payload (a full list or a delta)."""
    n = tariff.deny_count(payload)
    e = tariff.DENY_ENTRY
    return {bytes(payload[4 + i * e : 11 + i * e]): payload[11 + i * e] for i in range(n)}


def over(full, delta):
    """The list a terminal uses: `full` with `delta` ({uid: action}, remove too) looked up first."""
    out = dict(full)
    for uid, a in delta.items():
        if a == tariff.ACTION_REMOVE:
            out.pop(uid, None)
        else:
            out[uid] = a
    return out


def diff(base, target):
    """The delta entries that make `base` the list `target` ({uid: action} both)."""
    d = {uid: a for uid, a in target.items() if base.get(uid) != a}
    d.update((uid, tariff.ACTION_REMOVE) for uid in base if uid not in target)
    return d


def _newest(latest):
    """(full version, delta version in use over it or 0) of {kind: newest version}."""
    v = int(latest.get(signed.KIND_DENY, 0))
    w = int(latest.get(signed.KIND_DENY_DELTA, 0))
    return v, (w if w >= v else 0)  # a delta older than the full list is stale (firmware too)


def offer(latest, versions, payload, cache=None):
    """[(kind, version, payload)] of the deny lists a terminal that holds `versions` ("deny_ver",
    "deny_delta_ver": IDENTIFY, the Wi-Fi batch head) needs, in order, to use the newest one.
    `latest`: {kind: newest published version} (store.config_versions); `payload(kind, version)`:
    a published payload; `cache`: a dict that keeps computed deltas between calls. Module doc."""
    v, w = _newest(latest)
    have = int(versions.get("deny_ver", 0) or 0)
    have_d = int(versions.get("deny_delta_ver", 0) or 0)
    if have == v:  # its full list is the newest: the published delta, when it lacks it
        if w > have_d:
            return [(signed.KIND_DENY_DELTA, w, payload(signed.KIND_DENY_DELTA, w))]
        return []
    if have > v:
        return []  # newer than this store knows (another back office's): left alone
    top = max(v, w)
    if have_d >= have and have_d >= top:
        return []  # a delta computed from its full list brought it to the newest already
    full = payload(signed.KIND_DENY, v)
    if have:
        key = (have, v, w)
        got = cache.get(key) if cache is not None else None
        if got is None:
            try:
                base = entries(payload(signed.KIND_DENY, have))
                newest = entries(full)
                if w:
                    newest = over(newest, entries(payload(signed.KIND_DENY_DELTA, w)))
                got = tariff.pack_deny(diff(base, newest))
            except (TapkitError, ValueError):  # its list is not in this store: the full list
                got = b""
            if cache is not None:
                cache[key] = got
                for old in list(cache)[:-_CACHE]:  # the oldest (several threads may call)
                    cache.pop(old, None)
        if got and len(got) < len(full):
            return [(signed.KIND_DENY_DELTA, top, got)]
    out = [(signed.KIND_DENY, v, full)]
    if w > have_d:
        out.append((signed.KIND_DENY_DELTA, w, payload(signed.KIND_DENY_DELTA, w)))
    return out


def check_version(store, kind, version):
    """ValueError unless deny-list `version` of `kind` is newer than every published deny and
    deny-delta version (or is that very one again): one version, one list (module doc)."""
    if kind not in KINDS:
        return
    latest = store.config_versions()
    top = max(int(latest.get(k, 0)) for k in KINDS)
    if version > top or int(latest.get(kind, 0)) == version:
        return
    raise ValueError(
        "deny lists are at version %d (full and delta lists share their versions): "
        "publish version %d or later" % (top, top + 1)
    )


def _current(store):
    """(version, {uid bytes: action}) of the list terminals use now: the newest published deny list
    with the newest delta over it (0, {} when none)."""
    latest = store.config_versions()
    v, w = _newest(latest)
    if not v and not w:
        return 0, {}
    full = entries(store.config_payload(signed.KIND_DENY, v)) if v else {}
    if w:
        full = over(full, entries(store.config_payload(signed.KIND_DENY_DELTA, w)))
    return max(v, w), full


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
