"""The depot's HTTP server for terminals that upload over Wi-Fi (firmware/wifi.py); `tapkit serve`.

Starlette (ASGI) on uvicorn, the back office's stack:

    ingest = Ingest(db_url, ks, parse_ranges("1001-1999"))
    with Running(make_app(ingest), "127.0.0.1", 0) as srv:     # in a thread (tests, bench)
        srv.port
    serve(Options(db="sqlite:///taps.db", keystore="issuer.keys", workers=4, ...))   # the command

Endpoints:
  POST /v1/ota     a terminal's firmware status; the answer may carry a chunk of a release for it
                   (backoffice/otaserve.py)
  POST /v1/batch   a batch of journal records from one terminal (card_schema/upload.py), handed to
                   Ingest.batch in a worker thread: 200 and the answer, or 4xx with one line
                   (ingest.py says which).
  GET /healthz     200 "ok" when the store answers, else 503.
  GET /metrics     Prometheus text: taps received/stored, batches, terminals seen, rejects by reason.
Errors are 4xx/5xx with one line of text. /healthz and /metrics answer only the networks of
--metrics-from (loopback by default): per-terminal gauges would name the fleet to anyone.

Strangers get nothing (ingest.py): a batch is answered only when its head carries the terminal's
request tag; an unknown id and a known one without the tag get the same 403 "refused"; refusals
are counted per client address and reason (a row per flush, not per POST) and a source past its
refusal budget gets 429 before any work.

What the server does for a fleet:
- HTTP/1.1 with keep-alive (uvicorn, h11) for clients that want it; the terminals speak HTTP/1.0, one
  request per connection, and are answered and closed.
- Limits: a body must say its length (411) and be at most MAX_BODY bytes (413, a batch of
  upload_host.MAX_RECORDS records); it must arrive within BODY_TIMEOUT s (408); idle keep-alive
  connections close after KEEP_ALIVE s; beyond `limit_concurrency` connections new ones get 503.
- An access log line per request (uvicorn's "uvicorn.access" logger on stderr; --no-access-log).
- Graceful shutdown on SIGINT/SIGTERM: the socket stops accepting, requests in flight finish (their
  batches are committed and answered) for up to GRACE s.
- TLS built in (`--tls-cert`, `--tls-key`: uvicorn's ssl options) for clients that need it (the
  dashboard, scripts), or terminated by a reverse proxy in front; the terminals' records are encrypted
  in the body with their own keys either way (card_schema/upload.py), so a plain-HTTP listener on the
  depot network carries no rider data in clear.
- Several worker processes on one listening socket (`--workers N`, forked after the socket is bound),
  each with its own store connections; several hosts on one PostgreSQL work the same way
  (store.ingest locks the terminal's row: a batch is stored once whoever takes it).
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading

from card_schema import taprecord, upload
from card_schema.upload_host import MAX_RECORDS
from host_tools import TapkitError
from host_tools.backoffice import store as store_mod

MAX_BODY = upload.BATCH_HEAD + (MAX_RECORDS + 1) * taprecord.SIZE
BODY_TIMEOUT = 30.0  # seconds for a whole request body: a stalled terminal does not hold a slot
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
GRACE = 15  # seconds in-flight requests get at shutdown
BACKLOG = 4096  # pending connections the kernel queues (a depot's fleet arriving at once)


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


def parse_listen(text):
    host, sep, port = (text or "").rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    try:
        return host or "0.0.0.0", int(port)
    except ValueError:
        raise ServeError(f"bad --listen {text!r}: use HOST:PORT, e.g. 0.0.0.0:8080") from None


def parse_networks(text):
    """ "127.0.0.1,10.0.0.0/8" -> [ip_network...]; ServeError on a bad one."""
    import ipaddress

    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ServeError(f"bad network {part!r}: use e.g. 127.0.0.1,10.1.0.0/16") from None
    return out


LOOPBACK = "127.0.0.0/8,::1"


def make_app(ingest, max_body=MAX_BODY, body_timeout=BODY_TIMEOUT, metrics_from=LOOPBACK):
    """The ASGI application over one Ingest; /metrics and /healthz answer only clients in
    `metrics_from` (their gauges name the fleet's terminals), others get the 404 of any path."""
    import ipaddress

    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import ClientDisconnect
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    allowed = parse_networks(metrics_from)
    # imported now, not in the first requests (tens of ms with the GIL held, every request
    # waiting): the worker threads' async back end (anyio's) and the OTA offers
    from host_tools.backoffice import otaserve

    with contextlib.suppress(RuntimeError):  # (in a running event loop: it is imported there)
        import anyio

        anyio.run(anyio.to_thread.run_sync, int)

    def insider(request):
        try:
            ip = ipaddress.ip_address(request.client.host if request.client else "")
        except ValueError:
            return False
        return any(ip in net for net in allowed if net.version == ip.version)

    def text(status, msg, media="text/plain; charset=utf-8"):
        return PlainTextResponse(msg + "\n", status_code=status, media_type=media)

    async def read_body(request):
        n = request.headers.get("content-length")
        if n is None or not n.isdigit():
            return None, text(411, "Content-Length required")
        if int(n) > max_body:
            return None, text(413, f"batch of {n} bytes (at most {max_body})")
        chunks = []
        got = 0
        async for c in request.stream():
            got += len(c)
            if got > max_body:
                return None, text(413, f"batch over {max_body} bytes")
            chunks.append(c)
        return b"".join(chunks), None

    async def read_body_in_time(request):
        if hasattr(asyncio, "timeout"):  # 3.11+: no task of its own per request, as wait_for's
            async with asyncio.timeout(body_timeout):
                return await read_body(request)
        return await asyncio.wait_for(read_body(request), body_timeout)

    async def batch(request, handler=None):
        try:
            body, refusal = await read_body_in_time(request)
        except asyncio.TimeoutError:
            return text(408, f"request body not received within {body_timeout:g} s")
        except ClientDisconnect:  # the terminal dropped its exchange (a tap, a power cut)
            return text(400, "the client closed the connection before its whole body")
        if refusal is not None:
            return refusal
        try:
            source = request.client.host if request.client else "-"
            if handler is not None:
                status, out = await run_in_threadpool(handler, body)
            else:
                status, out = await run_in_threadpool(ingest.batch, body, source)
        except store_mod.StoreError as e:
            return text(503, f"store unavailable: {e}")
        except Exception as e:  # noqa: BLE001 - one bad request must not stop the server
            ingest.log(f"tapkit serve: internal error: {type(e).__name__}: {e}")
            return text(500, "internal error")
        if isinstance(out, str):
            return text(status, out)
        return Response(out, status_code=status, media_type="application/octet-stream")

    async def ota(request):  # firmware status and chunks (backoffice/otaserve.py)
        source = request.client.host if request.client else "-"
        return await batch(request, lambda body: otaserve.answer(ingest, body, source))

    async def healthz(request):
        if not insider(request):
            return text(404, "not found")
        ok = await run_in_threadpool(ingest.healthy)
        return text(200 if ok else 503, "ok" if ok else "store unavailable")

    async def metrics(request):
        if not insider(request):
            return text(404, "not found")
        out = await run_in_threadpool(ingest.prometheus)  # per-terminal gauges read the store
        return text(200, out.rstrip("\n"), "text/plain; version=0.0.4")

    async def not_found(request, exc):
        return text(exc.status_code, "not found" if exc.status_code == 404 else exc.detail)

    return Starlette(
        routes=[
            Route("/v1/batch", batch, methods=["POST"]),
            Route("/v1/ota", ota, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={404: not_found, 405: not_found},
    )


def bind(host, port):
    """The listening socket (bound before any worker starts: port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        s = socket.socket(family, kind, proto)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.listen(BACKLOG)
    except OSError as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    s.set_inheritable(True)
    return s


def check_tls(cert, key):
    """ServeError unless both or neither TLS file is given and each given one exists."""
    if bool(cert) != bool(key):
        raise ServeError("TLS needs both --tls-cert and --tls-key")
    for f in (cert, key):
        if f and not os.path.isfile(f):
            raise ServeError(f"no such file: {f}")


def config(app, access_log=True, tls_cert=None, tls_key=None, limit_concurrency=None, log=True):
    import uvicorn

    check_tls(tls_cert, tls_key)
    return uvicorn.Config(
        app,
        access_log=access_log,
        log_config=None if not log else _LOGGING,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=GRACE,
        limit_concurrency=limit_concurrency,
        backlog=BACKLOG,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        server_header=False,
        date_header=True,
        lifespan="off",
    )


# uvicorn's loggers on stderr, plain lines (journald or a file keeps them)
_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


class Running:
    """A uvicorn server over `app` in a background thread (tests, bench): `port`, `url`, stop()."""

    def __init__(self, app, host="127.0.0.1", port=0, **kw):
        import uvicorn

        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        kw.setdefault("log", False)
        kw.setdefault("access_log", False)
        self.server = uvicorn.Server(config(app, **kw))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        for _ in range(500):
            if self.server.started:
                break
            self.thread.join(0.01)
        else:
            raise ServeError("the server did not start")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(GRACE + 5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_workers(sock, workers, make, on_stop=None):
    """Serve `sock` with `workers` processes forked from here, each running make() -> uvicorn.Server
    in its own process (its own store connections); returns when they all stopped. SIGINT/SIGTERM
    to this process is passed on (each worker shuts down gracefully)."""
    if workers <= 1:
        make().run(sockets=[sock])
        return
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                make().run(sockets=[sock])
            except KeyboardInterrupt:
                pass
            except BaseException:  # noqa: BLE001 - the worker's last words, then out
                logging.getLogger("uvicorn.error").exception("tapkit serve worker failed")
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids.append(pid)

    def forward(signum, frame):
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in pids:
            while True:
                try:
                    os.waitpid(p, 0)
                    break
                except ChildProcessError:
                    break
                except InterruptedError:
                    continue
    finally:
        for s, h in old.items():
            signal.signal(s, h)
