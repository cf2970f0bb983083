"""Pull a terminal's journal over a link into the store, durable first.

    with SerialLink(port) as link, open_store(url) as store:
        summary = sync_terminal(link, store, keystore.load(path))

Order of work: IDENTIFY -> correct the terminal clock if it drifts -> PULL from
max(stored last seq, terminal acked seq) + 1 up to the terminal's head in batches -> each batch is
verified (MAC chain) and committed to the store, and only then ACKed, so the terminal never reclaims a
record the store does not hold -> INSTALL the newest published config (store.latest_configs) the
terminal lacks, signed with its config key. A link that drops anywhere leaves the store and the terminal consistent:
the next run resumes from what is stored (ingest is idempotent by (terminal, seq)).
"""

import time

from card_schema import frames, frames_host, signed, signed_host, taprecord
from host_tools import TapkitError, keystore
from host_tools.backoffice.store import ChainError

CLOCK_TOLERANCE = 5  # seconds of terminal clock drift before the host sets it


class SyncError(TapkitError):
    pass


def push_config(link, store, ks, tid, info):
    """Install what the terminal lacks, signed with its own config key; returns ["fares 7", ...]."""
    done = []
    key = keystore.config_key(ks, tid)
    for kind, version, payload in store.missing_configs(info):
        kind, version = link.install(signed_host.seal_fast(key, kind, version, payload))
        info[signed_host.version_key(kind)] = version
        done.append(f"{signed.NAMES[kind]} {version}")
    return done


def sync_terminal(
    link,
    store,
    ks,
    progress=None,
    batch=frames.MAX_RECORDS,
    clock_tolerance=CLOCK_TOLERANCE,
    commit_every=140,
    stream=None,
    now=time.time,
):
    """Sync one terminal; returns a summary dict (JSON-ready).

    `progress(done, total)` is called after every stored batch. `stream`: pull with a window of
    requests in flight and binary RECORDS lines (link.stream), committing and acknowledging every
    `commit_every` records; None: when the terminal says it can (IDENTIFY proto), False: one PULL
    and its ACK at a time (firmware before it). Raises LinkError (transport),
    ChainError (a batch that does not verify: nothing of it stored nor acked) or SyncError."""
    t0 = now()
    info = link.identify()
    t1 = now()
    tid = int(info["terminal_id"])
    head = int(info["head_seq"])
    acked = int(info["acked_seq"])
    key = keystore.terminal_key(ks, tid)
    link.key = key  # ACK, SET_CLOCK, INSTALL carry the terminal's tag (it obeys no other)

    # clock 0: not set since power-up (a power cut on a board without RTC): set it, drift unknown
    unset = "clock" in info and not info["clock"]
    drift = None if unset else round(int(info.get("clock", 0)) - (t0 + t1) / 2)
    clock_set = False
    if unset or abs(drift) > clock_tolerance:
        link.set_clock(round(now()))
        clock_set = True

    last = store.last_seq(tid)
    if last > head:
        raise SyncError(
            f"terminal {tid} reports head seq {head} but the store holds up to seq {last}: "
            "its journal was reset or its id is used twice"
        )
    if last > acked:
        # a previous run stored these but lost the link before its ACK: acknowledge them now
        acked = link.ack(last)
    seq = max(last, acked) + 1
    # records the terminal acknowledged to someone else (Wi-Fi sync into another store): the first
    # record after the gap links to the terminal's last acknowledged one, which it still holds
    # unless that sector was reclaimed: pulled first, its MAC is the anchor the first record is
    # checked against (as a Wi-Fi batch's anchor; stored in the anchors table). Without it the
    # first link cannot be checked: stored "unverified" and listed by the audit and the report.
    gap = seq > last + 1
    gap_before = seq - 1 if gap else None
    prev = None
    if gap and seq <= head:
        anchor = link.pull(seq - 1, 1)
        if anchor and taprecord.seq_of(anchor[0]) == seq - 1:
            prev = anchor[0][taprecord.BODY : taprecord.BODY + 8]
    anchored = prev is not None
    first_seq = seq
    total = max(0, head - seq + 1)
    pulled = stored = duplicates = 0
    if progress:
        progress(0, total)

    def commit(recs):
        nonlocal gap, prev, pulled, stored, duplicates
        try:
            inserted, dups = store.ingest(tid, recs, key, allow_gap=gap, prev_mac=prev)
        except ChainError as e:
            store.note_reject(tid, "usb", f"bad_mac: {e}")  # the report lists refused uploads
            raise
        gap, prev = False, None
        pulled += len(recs)
        stored += inserted
        duplicates += dups
        if progress:
            progress(min(pulled, total), total)

    def check_first(recs, want):
        got = taprecord.seq_of(recs[0])
        if got != want and not (gap and prev is None and got > want):
            raise SyncError(f"terminal {tid} answered seq {got} when asked for seq {want}")

    if stream is None:
        stream = int(info.get("proto", 1)) >= frames_host.PROTO_BINARY
    if stream and seq <= head:
        # a window of PULLs in flight, binary RECORDS lines: the line's rate (PullStream);
        # committed and acknowledged every `commit_every` records, durable first
        s = link.stream(seq, head)
        held = []
        for recs in s:
            if not held:
                check_first(recs, seq)
            held += recs
            if len(held) >= commit_every:
                commit(held)
                seq = taprecord.seq_of(held[-1]) + 1
                s.ack(seq - 1)
                held = []
        if held:
            commit(held)
            seq = taprecord.seq_of(held[-1]) + 1
            s.ack(seq - 1)
        a = s.finish()
        acked = acked if a is None else a
        if seq <= head:
            raise SyncError(
                f"terminal {tid} sent no records from seq {seq} although its head is {head}"
            )
    while seq <= head:
        recs = link.pull(seq, min(batch, head - seq + 1))
        if not recs:
            raise SyncError(
                f"terminal {tid} sent no records from seq {seq} although its head is {head}"
            )
        check_first(recs, seq)
        commit(recs)
        seq = taprecord.seq_of(recs[-1]) + 1
        acked = link.ack(seq - 1)  # durable first: the batch is committed
    installed = push_config(link, store, ks, tid, info)
    seen = dict(info, clock_drift=drift, clock_set=clock_set)
    try:  # the newest diagnostics lines, for the fleet status board ("last errors")
        seen["diag"] = list(link.diag_log())[-5:]
    except (TapkitError, ValueError):
        pass
    store.note_sync(tid, seen, acked, via="usb")
    return {
        "config_installed": installed,
        "terminal": tid,
        "fw": info.get("fw"),
        "head_seq": head,
        "pulled": pulled,
        "stored": stored,
        "duplicates": duplicates,
        "acked_seq": acked,
        "last_seq": store.last_seq(tid),
        "clock_drift": drift,
        "clock_set": clock_set,
        "from_seq": first_seq,
        "gap_before": gap_before,  # seq up to which records went elsewhere (None: no gap)
        "gap_anchored": gap_before is not None and anchored,  # its first link checked
    }
