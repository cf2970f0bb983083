"""Per-terminal Prometheus gauges, read from the store at each scrape (prometheus-client).

    text = fleet_metrics(store)      # bytes in the Prometheus text format (what /metrics adds)

Gauges, labelled by terminal (and role): tapkit_terminal_last_seen_seconds (unix time of the last
contact), tapkit_terminal_unsynced (taps the terminal held unsynced at its last USB contact),
tapkit_terminal_journal_fill_ratio (unsynced / capacity then), tapkit_terminal_clock_drift_seconds,
tapkit_terminal_stale (1 when out of contact longer than the stale hours), and fleet-wide
tapkit_unconfirmed_rial / tapkit_findings (by kind) / tapkit_unaudited_records.
"""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from host_tools.backoffice import audit, fleetstatus


class FleetCollector:
    def __init__(self, store_fn, stale_hours=24.0):
        self.store_fn = store_fn  # () -> a context manager or a store
        self.stale_hours = stale_hours

    def collect(self):
        store = self.store_fn()
        rows = fleetstatus.status(store, stale_hours=self.stale_hours)
        labels = ["terminal", "role"]
        seen = GaugeMetricFamily(
            "tapkit_terminal_last_seen_seconds", "Unix time of the last contact.", labels=labels
        )
        unsynced = GaugeMetricFamily(
            "tapkit_terminal_unsynced", "Unsynced taps at the last USB contact.", labels=labels
        )
        fill = GaugeMetricFamily(
            "tapkit_terminal_journal_fill_ratio",
            "Journal fill (unsynced / capacity) at the last USB contact.",
            labels=labels,
        )
        drift = GaugeMetricFamily(
            "tapkit_terminal_clock_drift_seconds",
            "Terminal clock minus host clock at the last USB contact.",
            labels=labels,
        )
        stale = GaugeMetricFamily(
            "tapkit_terminal_stale", "1 when out of contact for too long.", labels=labels
        )
        for r in rows:
            lv = [str(r["terminal"]), r["role"]]
            if r["last_seen"]:
                seen.add_metric(lv, r["last_seen"])
            if r["unsynced"] is not None:
                unsynced.add_metric(lv, r["unsynced"])
            if r["fill"] is not None:
                fill.add_metric(lv, r["fill"] / 100.0)
            if r["clock_drift"] is not None:
                drift.add_metric(lv, r["clock_drift"])
            stale.add_metric(lv, 1 if {"stale", "never"} & set(r["flags"]) else 0)
        yield from (seen, unsynced, fill, drift, stale)
        unc = store._one(
            "SELECT COUNT(*), SUM(CASE WHEN kind IN ('refund') THEN -amount ELSE amount END) "
            "FROM taps WHERE status = 'unconfirmed'"
        )
        g = GaugeMetricFamily("tapkit_unconfirmed_rial", "Money records not confirmed yet (Rial).")
        g.add_metric([], int(unc[1] or 0))
        yield g
        g = GaugeMetricFamily(
            "tapkit_findings", "Reconciliation findings by kind.", labels=["kind"]
        )
        for kind, n in store._all("SELECT kind, COUNT(*) FROM findings GROUP BY kind"):
            g.add_metric([kind], int(n))
        yield g
        g = GaugeMetricFamily("tapkit_unaudited_records", "Stored records not audited yet.")
        g.add_metric([], audit.pending(store))
        yield g


def fleet_metrics(store, stale_hours=24.0):
    """The gauges above for one store, as Prometheus text (bytes)."""
    reg = CollectorRegistry()
    reg.register(FleetCollector(lambda: store, stale_hours))
    return generate_latest(reg)
