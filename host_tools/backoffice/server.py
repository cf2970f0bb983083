"""The depot's HTTP server for terminals that upload over Wi-Fi (firmware/wifi.py); `tapkit serve`.

    ingest = Ingest(db_url, ks, parse_ranges("1001-1999"))
    srv = make_server(ingest, *parse_listen("0.0.0.0:8080")); srv.serve_forever()

Endpoints:
  POST /v1/batch   a batch of journal records from one terminal (card_schema/upload.py), handed to
                   Ingest.batch: 200 and the answer, or 4xx with one line (ingest.py says which).
  GET /healthz     200 "ok" when the store answers, else 503.
  GET /metrics     Prometheus text: taps received/stored, batches, terminals seen, rejects by reason.
Errors: 4xx/5xx with one line of text.
"""

import http.server

from card_schema import taprecord, upload
from card_schema.upload_host import MAX_RECORDS
from host_tools import TapkitError
from host_tools.backoffice import store as store_mod


class ServeError(TapkitError):
    pass


def parse_ranges(text):
    """ "1001-1999,2005" -> [(1001, 1999), (2005, 2005)]."""
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            a, _, b = part.partition("-")
            lo, hi = int(a), int(b or a)
        except ValueError:
            raise ServeError(f"bad terminal range {part!r}: use e.g. 1001-1999,2005") from None
        if lo > hi:
            raise ServeError(f"bad terminal range {part!r}: {lo} > {hi}")
        out.append((lo, hi))
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tapkit"
    protocol_version = "HTTP/1.0"  # one request per connection: what the terminal speaks
    ingest = None  # type: Ingest  # set on the class made by make_server
    max_body = upload.BATCH_HEAD + MAX_RECORDS * taprecord.SIZE
    timeout = 30  # seconds per socket read: a stalled terminal does not hold a thread forever

    def log_message(self, fmt, *args):  # access log off: rejects are logged by Ingest
        pass

    def _send(self, status, body, ctype="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = (body + "\n").encode()
        else:
            ctype = "application/octet-stream"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            ok = self.ingest.healthy()
            self._send(200 if ok else 503, "ok" if ok else "store unavailable")
        elif self.path == "/metrics":
            self._send(200, self.ingest.prometheus().rstrip("\n"), "text/plain; version=0.0.4")
        else:
            self._send(404, "not found")

    def do_POST(self):
        if self.path != "/v1/batch":
            self._send(404, "not found")
            return
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, "Content-Length required")
            return
        if n < 0 or n > self.max_body:
            self._send(413, f"batch of {n} bytes (at most {self.max_body})")
            return
        body = self.rfile.read(n)
        if (
            len(body) != n
        ):  # the connection dropped mid-request: nothing to store, nobody to answer
            return
        try:
            status, out = self.ingest.batch(body)
        except store_mod.StoreError as e:
            self._send(503, f"store unavailable: {e}")
            return
        except Exception as e:  # noqa: BLE001 - one bad request must not stop the server
            self.ingest.log(f"tapkit serve: internal error: {type(e).__name__}: {e}")
            self._send(500, "internal error")
            return
        self._send(status, out)


def make_server(ingest, host, port):
    handler = type("TapkitHandler", (Handler,), {"ingest": ingest})
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer((host, port), handler)
    srv.daemon_threads = True
    return srv


def parse_listen(text):
    host, sep, port = (text or "").rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    try:
        return host or "0.0.0.0", int(port)
    except ValueError:
        raise ServeError(f"bad --listen {text!r}: use HOST:PORT, e.g. 0.0.0.0:8080") from None
