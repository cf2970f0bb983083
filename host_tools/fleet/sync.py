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

from card_schema import frames, signed, signed_host, taprecord
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
    now=time.time,
):
    """Sync one terminal; returns a summary dict (JSON-ready).

    `progress(done, total)` is called after every stored batch. Raises LinkError (transport),
    ChainError (a batch that does not verify: nothing of it stored nor acked) or SyncError."""
    t0 = now()
    info = link.identify()
    t1 = now()
    tid = int(info["terminal_id"])
    head = int(info["head_seq"])
    acked = int(info["acked_seq"])
    key = keystore.terminal_key(ks, tid)

    drift = round(int(info.get("clock", 0)) - (t0 + t1) / 2)
    clock_set = False
    if abs(drift) > clock_tolerance:
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
    # batch cannot link to a stored predecessor; the report shows the gap
    gap = seq > last + 1
    gap_before = seq - 1 if gap else None
    first_seq = seq
    total = max(0, head - seq + 1)
    pulled = stored = duplicates = 0
    if progress:
        progress(0, total)
    while seq <= head:
        recs = link.pull(seq, min(batch, head - seq + 1))
        if not recs:
            raise SyncError(
                f"terminal {tid} sent no records from seq {seq} although its head is {head}"
            )
        got = taprecord.seq_of(recs[0])
        if got != seq and not (gap and got > seq):
            raise SyncError(f"terminal {tid} answered seq {got} when asked for seq {seq}")
        try:
            inserted, dups = store.ingest(tid, recs, key, allow_gap=gap)
        except ChainError as e:
            store.note_reject(tid, "usb", f"bad_mac: {e}")  # the report lists refused uploads
            raise
        gap = False
        pulled += len(recs)
        stored += inserted
        duplicates += dups
        seq = taprecord.seq_of(recs[-1]) + 1
        acked = link.ack(seq - 1)  # durable first: the batch is committed
        if progress:
            progress(min(pulled, total), total)
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
    }
