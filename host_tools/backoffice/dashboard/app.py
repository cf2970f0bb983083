"""The back office's web dashboard: Starlette + Jinja2, charts by uPlot served from here (no CDN).

    backend = Backend("sqlite:///taps.db", audit.keys_from(ks))     # the store must exist
    app = make_app(backend)          # an ASGI app; `tapkit dashboard` runs it with uvicorn

Pages (every one takes ?lang=en|fa, ?unit=rial|toman; the Persian pages are right to left):
  /                 revenue over time, taps per hour (charts), refusals by reason, the totals and
                    alerts (?since=YYYY-MM-DD&until=... local days; default the 30 days up to
                    the newest record)
  /fleet            the status board: alerts first, then every terminal and office (?page=)
  /findings         reconciliation findings (?kind=), each linking to its record or card
  /record/T/S       one stored record: decoded from its raw bytes beside the stored columns
  /card?uid=UID     card lookup: the card's ledger by its counter, its findings
  /api/summary      the overview's figures as JSON;  /metrics  Prometheus;  /healthz
Every figure comes from the audited rows and rollups (report.py); a background thread audits
what arrives every `audit_every` seconds, so pages never verify records themselves.
"""

import contextlib
import json
import os
import queue
import threading
import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from card_schema import taprecord_host
from host_tools.backoffice import audit, fleetstatus, ledger, metrics, releases, report
from host_tools.backoffice import store as store_mod
from host_tools.backoffice.dashboard.i18n import Labels

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = 200  # rows per page of the fleet board and the findings


class Backend:
    """The store (a small pool of connections), the keys and the background audit."""

    def __init__(self, db_url, keys, audit_every=10.0, stale_hours=24.0, high_water=0.8, pool=4):
        self.db_url = db_url
        self.keys = keys
        self.audit_every = audit_every
        self.stale_hours = stale_hours
        self.high_water = high_water
        self.pool = queue.LifoQueue()
        first = store_mod.open_store(db_url, create=False)  # fails here: no store, bad URL
        self.pool.put(first)
        for _ in range(pool - 1):
            self.pool.put(None)
        self.stop = threading.Event()
        self.last_audit = None
        self.audit_error = None
        self.thread = None

    @contextlib.contextmanager
    def store(self):
        s = self.pool.get()
        try:
            if s is None:
                s = store_mod.open_store(self.db_url, create=False)
            yield s
        except Exception:
            if s is not None:
                with contextlib.suppress(Exception):
                    s.close()
            s = None
            raise
        finally:
            self.pool.put(s)

    def audit_once(self):
        with self.store() as s:
            self.last_audit = dict(audit.run(s, self.keys), at=int(time.time()))
        return self.last_audit

    def start(self):
        def loop():
            while not self.stop.is_set():
                try:
                    self.audit_once()
                    self.audit_error = None
                except Exception as e:  # noqa: BLE001 - the pages say it; the loop goes on
                    self.audit_error = f"{type(e).__name__}: {e}"
                self.stop.wait(self.audit_every)

        self.thread = threading.Thread(target=loop, name="tapkit-audit", daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=60)
        while not self.pool.empty():
            s = self.pool.get_nowait()
            if s is not None:
                s.close()


# ---- figures for the pages ------------------------------------------------------------------------


def _period(store, params, tz, days=30):
    """[since, until) from ?since / ?until (local days), default the `days` up to the newest."""
    since = report.parse_when(params["since"], tz) if params.get("since") else None
    until = report.parse_when(params["until"], tz) if params.get("until") else None
    if until is None:
        r = store._one("SELECT MAX(b30) FROM roll_time")
        newest = (int(r[0]) + 1) * 1800 if r and r[0] is not None else int(time.time())
        until = ((newest + tz) // 86400 + 1) * 86400 - tz
    if since is None:
        since = until - days * 86400
    return since, until


def overview(store, params, stale_hours=24.0, high_water=0.8):
    """What / shows (and /api/summary returns)."""
    tz = audit.tz_of(store)
    since, until = _period(store, params, tz)
    tot = report.totals(store, since, until, tz)
    days = report.grouped(store, "day", since, until, tz)
    h_until = until
    r = store._one("SELECT MAX(b30) FROM roll_time WHERE b30 < ?", (until // 1800,))
    if r and r[0] is not None:
        h_until = min(until, ((int(r[0]) * 1800 + tz) // 3600 + 1) * 3600 - tz)
    h_since = max(since, h_until - 48 * 3600)
    by_hour = dict(report.grouped(store, "hour", h_since, h_until, tz))
    # every hour of the window, an hour without taps drawn as 0 (not left out of the line)
    hours = [
        (k, by_hour.get(k, {"taps": 0}))
        for k in range((h_since + tz) // 3600, (h_until + tz + 3599) // 3600)
    ]
    fleet_rows = fleetstatus.status(store, stale_hours=stale_hours, high_water=high_water)
    n_findings = {
        k: int(n) for k, n in store._all("SELECT kind, COUNT(*) FROM findings GROUP BY kind")
    }
    return {
        "since": since,
        "until": until,
        "tz": tz,
        "totals": tot,
        "revenue_by_day": [
            {"t": k * 86400 - tz, "revenue": f["revenue"], "unconfirmed": f["unconfirmed_amount"]}
            for k, f in days
        ],
        "taps_by_hour": [{"t": k * 3600 - tz, "taps": f["taps"]} for k, f in hours],
        "refused_by_reason": report.refused_by_reason(store, since, until, tz),
        "alerts": fleetstatus.alerts(fleet_rows),
        "terminals": len(fleet_rows),
        "findings": n_findings,
        "not_audited": audit.pending(store),
    }


def _bars(items, width=420, bar=18):
    """Server-side SVG horizontal bars for [(label, n)] (the refusals)."""
    if not items:
        return ""
    top = max(n for _l, n in items) or 1
    h = bar * len(items) + 4
    parts = [f'<svg class="bars" width="{width}" height="{h}" role="img">']
    for i, (label, n) in enumerate(items):
        w = max(1, int((width - 170) * n / top))
        y = i * bar + 2
        parts.append(
            f'<text x="0" y="{y + 13}">{label}</text>'
            f'<rect x="120" y="{y}" width="{w}" height="{bar - 4}"></rect>'
            f'<text x="{124 + w}" y="{y + 13}">{n}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


# ---- the app ---------------------------------------------------------------------------------------


def make_app(backend):
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))
    env = templates.env
    env.globals["PAGE"] = PAGE

    def ctx(request, **kw):
        q = request.query_params
        t = Labels(q.get("lang", "en"), q.get("unit", "rial"))

        def link(path, **over):
            params = {"lang": t.lang, "unit": t.unit}
            params.update({k: v for k, v in over.items() if v is not None})
            return path + "?" + "&".join(f"{k}={v}" for k, v in params.items())

        def when(ts):
            return t.date(ts, kw.get("tz", 0))

        d = {
            "request": request,
            "t": t,
            "link": link,
            "when": when,
            "path": request.url.path,
            "audit_error": backend.audit_error,
        }
        d.update(kw)
        return d

    def page(request, name, **kw):
        return templates.TemplateResponse(request, name, ctx(request, **kw))

    def home(request):
        with backend.store() as s:
            try:
                ov = overview(s, request.query_params, backend.stale_hours, backend.high_water)
            except report.PeriodError as e:
                return PlainTextResponse(str(e), status_code=400)
        t = Labels(request.query_params.get("lang", "en"), request.query_params.get("unit"))
        div = 10 if t.unit == "toman" else 1
        charts = {
            "revenue": {
                "x": [p["t"] for p in ov["revenue_by_day"]],
                "series": [
                    {
                        "label": t("revenue"),
                        "y": [p["revenue"] / div for p in ov["revenue_by_day"]],
                    },
                    {
                        "label": t("unconfirmed"),
                        "y": [p["unconfirmed"] / div for p in ov["revenue_by_day"]],
                    },
                ],
            },
            "taps": {
                "x": [p["t"] for p in ov["taps_by_hour"]],
                "series": [{"label": t("taps"), "y": [p["taps"] for p in ov["taps_by_hour"]]}],
            },
        }
        bars = _bars([(k, n) for k, n in ov["refused_by_reason"].items()])
        data = json.dumps(charts).replace("</", "<\\/")  # inside a <script> element
        return page(request, "overview.html", ov=ov, charts=data, bars=bars, tz=ov["tz"])

    def summary(request):
        with backend.store() as s:
            ov = overview(s, request.query_params, backend.stale_hours, backend.high_water)
        ov["alerts"] = [{"terminal": a["terminal"], "flags": a["flags"]} for a in ov["alerts"]]
        return JSONResponse(ov)

    def fleet(request):
        n = max(1, int(request.query_params.get("page", "1") or 1))
        with backend.store() as s:
            rows = fleetstatus.status(
                s, stale_hours=backend.stale_hours, high_water=backend.high_water
            )
            tz = audit.tz_of(s)
            fw = releases.fleet(s)
        return page(
            request,
            "fleet.html",
            rollouts=fw["releases"],
            fw_events=fw["events"][:20],
            alerts=fleetstatus.alerts(rows),
            rows=rows[(n - 1) * PAGE : n * PAGE],
            page_no=n,
            pages=max(1, (len(rows) + PAGE - 1) // PAGE),
            total=len(rows),
            tz=tz,
            stale_hours=backend.stale_hours,
            high_water=backend.high_water,
        )

    def findings(request):
        kind = request.query_params.get("kind") or None
        n = max(1, int(request.query_params.get("page", "1") or 1))
        with backend.store() as s:
            found = [
                dict(f, text=report.describe(f))
                for f in audit.findings(
                    s, kinds=[kind] if kind else None, limit=PAGE, offset=(n - 1) * PAGE
                )
            ]
            counts = dict(s._all("SELECT kind, COUNT(*) FROM findings GROUP BY kind"))
            fleet_rows = s.terminals()
            tz = audit.tz_of(s)
        report.locate_missing(found, fleet_rows)
        return page(
            request,
            "findings.html",
            found=found,
            counts={k: int(v) for k, v in counts.items()},
            kind=kind,
            page_no=n,
            tz=tz,
        )

    def record(request):
        tid = int(request.path_params["terminal"])
        seq = int(request.path_params["seq"])
        with backend.store() as s:
            r = s._one(audit._SELECT + " WHERE terminal = ? AND seq = ?", (tid, seq))
            found = [
                dict(f, text=report.describe(f))
                for f in audit.findings(s)
                if f["terminal"] == tid and f["seq"] == seq
            ]
            tz = audit.tz_of(s)
        if r is None:
            return page(request, "record.html", row=None, tid=tid, seq=seq, tz=tz, found=[])
        row = audit._row_dict(r)
        try:
            decoded = taprecord_host.to_dict(row["raw"])
        except (taprecord_host.RecordError, ValueError) as e:
            decoded = {"error": str(e)}
        fields = [
            (c, row[c], decoded.get(c, "-"), str(row[c]) == str(decoded.get(c)))
            for c in audit.COLUMNS
        ]
        return page(
            request, "record.html", row=row, fields=fields, tid=tid, seq=seq, tz=tz, found=found
        )

    def card(request):
        uid = (request.path_params.get("uid") or request.query_params.get("uid") or "").strip()
        uid = uid.lower().replace(":", "").replace(" ", "")
        view = None
        with backend.store() as s:
            if uid:
                view = ledger.card_view(s, uid)
                report.locate_missing(view["findings"], s.terminals())
            tz = audit.tz_of(s)
        return page(request, "card.html", uid=uid, view=view, tz=tz)

    def healthz(request):
        try:
            with backend.store() as s:
                s.schema_version()
            return PlainTextResponse("ok")
        except Exception:  # noqa: BLE001
            return PlainTextResponse("store unavailable", status_code=503)

    def prom(request):
        with backend.store() as s:
            body = metrics.fleet_metrics(s, backend.stale_hours)
        return Response(body, media_type="text/plain; version=0.0.4")

    def favicon(request):
        return Response(b"", media_type="image/x-icon")

    routes = [
        Route("/", home),
        Route("/fleet", fleet),
        Route("/findings", findings),
        Route("/record/{terminal:int}/{seq:int}", record),
        Route("/card", card),
        Route("/card/{uid}", card),
        Route("/api/summary", summary),
        Route("/healthz", healthz),
        Route("/metrics", prom),
        Route("/favicon.ico", favicon),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    return Starlette(routes=routes)


def serve(backend, host, port, ready=None):
    """Run the dashboard with uvicorn on host:port (port 0: a free one) until interrupted.
    `ready(host, port)` is called once it listens."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    h, p = sock.getsockname()[:2]
    config = uvicorn.Config(make_app(backend), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    backend.start()
    if ready:
        ready(h, p)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        backend.close()
