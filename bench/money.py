"""Every rial (harness/money.py): seeded cases of power cuts at every frame of a tap and on timers,
commit answers lost / damaged / late, field drops, the chip losing its target, with the card kept,
pulled, another rider next or gone, on every profile; after each run the terminal is synced and the
ledger checked against what every card paid. The cases run on several boards at once (one worker
process per board, as many as there are cores by default: they mostly wait on the VM).

Also here, because the card-info change set them: APDUs and the modelled time of a charged bus tap
(bench/tap.py's measure) and the flash cost of a charged tap, now the charge and its CONFIRM (two
journal records: bench/journal.py's per-record cost times the records a charged tap writes).

data: {cases, cuts, phantom_charges, double_charges, unresolved, ledger_minus_cards, missed_charges,
untrue_messages, charges, confirmed, voided, by_continuity, faults: {kind: n}, profiles: {name:
cases}, workers, seconds, apdus_per_tap, tap_ms, records_per_charged_tap, erases_per_tap,
bytes_programmed_per_tap, fails: [...]}.

    python -m bench money --cases 2000 --workers 2 --seed 3
"""

import os
import time

from bench import row

SECTION = "money"
SHARE = (("bus", 5), ("pos", 2), ("parking", 1), ("taxi", 1), ("charity", 1))  # of every 10 cases
CHUNK = 250  # cases per board run (one deployment, one closing, one ledger check)
SUM = (
    "cases",
    "cuts",
    "phantom_charges",
    "double_charges",
    "unresolved",
    "ledger_minus_cards",
    "missed_charges",
    "untrue_messages",
    "charges",
    "confirmed",
    "voided",
    "by_continuity",
    "checking_shown",
    "attempts",
    "retaps",
)


def _job(args):
    from harness.money import MoneyFailure, money_campaign

    seed, cases, profile = args
    try:
        t = money_campaign(seed, cases, profile, keep_going=True)
    except MoneyFailure as e:  # a board that could not go on (the terminal stopped answering)
        t = {"cases": 0, "failed": 1, "failures": [str(e)]}
    t["profile"] = profile
    return t


def jobs(cases, seed):
    """(seed, cases, profile) chunks: SHARE of the cases per profile, CHUNK cases per board."""
    out = []
    total = sum(w for _, w in SHARE)
    for i, (profile, w) in enumerate(SHARE):
        n = cases * w // total if i else cases - sum(cases * w2 // total for _, w2 in SHARE[1:])
        k = 0
        while n > 0:
            c = min(CHUNK, n)
            out.append((seed * 1000 + i * 100 + k, c, profile))
            n -= c
            k += 1
    return out


def campaign(cases, seed=1, workers=None):
    from multiprocessing import get_context

    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    todo = jobs(cases, seed)
    with get_context("spawn").Pool(min(workers, len(todo))) as pool:
        tallies = list(pool.imap_unordered(_job, todo))
    out = {k: 0 for k in SUM}
    out.update({"faults": {}, "profiles": {}, "fails": [], "workers": workers})
    for t in tallies:
        for k in SUM:  # a board's ledger difference counts whole: + and - never cancel
            out[k] += abs(t.get(k, 0)) if k == "ledger_minus_cards" else t.get(k, 0)
        for f, n in t.get("faults", {}).items():
            out["faults"][f] = out["faults"].get(f, 0) + n
        out["profiles"][t["profile"]] = out["profiles"].get(t["profile"], 0) + t.get("cases", 0)
        out["fails"] += t.get("failures", [])[:5]
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def flash_cost(records_per_tap):
    from bench import journal
    from harness import vm
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        vm.build(d)
        c = journal.run_vm(d, "journal_cost", d, 64)[0]
    taps = c["taps"]
    return (
        round(c["erases"] / taps * records_per_tap, 4),
        round(c["bytes_programmed"] / taps * records_per_tap, 1),
    )


def run(opts):
    from bench import tap

    m = campaign(opts.cases, opts.seed, opts.workers)
    taps = tap.measure(3)
    apdus = sorted(t["apdus"] for t in taps)[1]
    air = sorted(t["air_bytes"] for t in taps)[1]
    apdus_ms = air * tap.US_PER_BYTE / 1000.0 + (apdus - 1) * tap.CARD_MS_PER_CMD
    m["apdus_per_tap"] = apdus
    m["tap_ms"] = round(apdus_ms + tap.CARD_MS_COMMIT, 1)
    # every charge is followed by its CONFIRM (commit answer) or its VOID / CONFIRM (trip log)
    m["records_per_charged_tap"] = 2
    m["erases_per_tap"], m["bytes_programmed_per_tap"] = flash_cost(2)
    n = m["cases"]
    rows = [
        row(
            SECTION,
            "money: cases (power cuts, lost/damaged/late answers, drops, on every profile)",
            n,
            "",
            "%d boards, %d workers, %.0f s; %s"
            % (
                len(jobs(opts.cases, opts.seed)),
                m["workers"],
                m["seconds"],
                ", ".join("%s %d" % kv for kv in sorted(m["profiles"].items())),
            ),
        ),
        row(SECTION, "money: power cuts (SIGKILL of the firmware)", m["cuts"]),
        row(
            SECTION,
            "money: phantom charges (confirmed, never paid by the card)",
            m["phantom_charges"],
        ),
        row(
            SECTION, "money: double charges (one tap, two card transactions)", m["double_charges"]
        ),
        row(SECTION, "money: charges unresolved after the closing taps", m["unresolved"]),
        row(SECTION, "money: ledger minus what the cards paid", m["ledger_minus_cards"], "Rial"),
        row(SECTION, "money: messages shown that were not true", m["untrue_messages"]),
        row(
            SECTION,
            "money: charges confirmed / voided",
            m["confirmed"],
            "",
            "%d voided; %d of them by counter continuity; %d commit answers checked on the card"
            % (m["voided"], m["by_continuity"], m["checking_shown"]),
        ),
        row(SECTION, "money: APDUs per charged bus tap (card info MACed)", apdus),
        row(SECTION, "money: modelled time per charged bus tap", m["tap_ms"], "ms", "air + card"),
        row(
            SECTION,
            "money: flash per charged tap (charge + CONFIRM)",
            m["bytes_programmed_per_tap"],
            "B",
            "%.4f erases per tap" % m["erases_per_tap"],
        ),
    ]
    rows += [
        row(SECTION, "  FAILED (replay: python -m bench money)", None, "", f) for f in m["fails"]
    ]
    return rows, m
