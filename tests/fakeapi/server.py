"""A Tsanghi-compatible HTTP server on loopback, serving a ``Universe``.

It answers the three ETF endpoints of the real API under ``/api/fin``::

    GET /api/fin/etf/{exchange}/list?token=
    GET /api/fin/etf/{exchange}/daily?token=&ticker=&start_date=&end_date=&order=
    GET /api/fin/etf/{exchange}/daily/latest?token=&date=

with the real envelope ``{"msg": "操作成功", "code": 200, "data": [...]}``. Choices
where the public documentation is silent:

- A wrong or missing token: HTTP 200 with ``code`` 401 and ``data`` null.
- An unknown exchange, a missing ``ticker``, a malformed date or ``order``, or
  ``fmt`` other than ``json``: HTTP 200 with ``code`` 400 and a message.
- An unknown ticker: ``code`` 200 with ``data: []`` (the same as a listed ETF
  with no rows in the range), so clients cannot tell "delisted" from "no data".
- ``order=0`` (the default) returns a fixed shuffle, so clients must sort.
- ``columns`` is ignored; every field is always sent.
- An unknown path: HTTP 404 with ``code`` 404.

Faults imitate the servers in front of the real API (see ``add_fault``). The
token is never logged: the request log keeps the query without it and the
standard per-request stderr logging is switched off.
"""

from __future__ import annotations

import hmac
import json
import re
import signal
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import click

from fakeapi.universe import EXCHANGES, Universe, dumps_exact

API_PREFIX = "/api/fin"
OK_MSG = "操作成功"
AUTH_MSG = "token无效或已过期 (invalid or expired token)"
BUSY_MSG = "系统繁忙"
QUOTA_MSG = "token今日调用次数已用完 (daily quota used up)"
FAULT_KINDS = (
    "429",
    "502",
    "503",
    "slow",
    "drop",
    "truncated",
    "malformed",
    "envelope",
    "auth",
    "empty",
    "404",
    "html404",
    "400",
    "echo",
    "quota",
    "dateformat",
    "body",
)
# What a "body" fault sends, under the status it names: what the servers in front
# of an API send when the API behind them is not answering (or they are misconfigured).
BODIES = {
    "blank": (b"", None),  # no body at all, Content-Length: 0
    "text": (b"Service Unavailable", "text/plain; charset=utf-8"),
    "{}": (b"{}", "application/json"),
    "[]": (b"[]", "application/json"),
    "html": (
        b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>An error occurred."
        b"</h1><p>Sorry, the page you are looking for is currently unavailable.</p></body></html>",
        "text/html",
    ),
    "echo": (b"bad gateway: GET {path}", "text/plain; charset=utf-8"),  # the request, token and all
}
ENDPOINTS = ("list", "daily", "latest")

_ROUTE = re.compile(r"/api/fin/etf/([^/]+)/(list|daily|daily/latest)")
_KINDS = {"list": "list", "daily": "daily", "daily/latest": "latest"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_HTML_PAGES = {
    429: "<html><body><h1>429 Too Many Requests</h1></body></html>",
    502: "<html><body><h1>502 Bad Gateway</h1></body></html>",
    503: "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
    404: "<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found"
    "</h1></center><hr><center>nginx</center></body></html>",
}
_ISO_DATE_FIELD = re.compile(rb'"date":"(\d{4})-(\d{2})-(\d{2})"')
_MALFORMED_PAGE = (
    "<!DOCTYPE html><html><head><title>Tsanghi</title></head>"
    "<body><p>系统维护中，请稍后再试 (maintenance, try again later)</p></body></html>"
)


@dataclass
class Fault:
    """One injected failure; ``times`` counts down per matching request (None: forever)."""

    kind: str
    endpoint: str | None = None  # "list" / "daily" / "latest"; None matches any
    exchange: str | None = None
    ticker: str | None = None
    times: int | None = 1
    retry_after: float | None = 1  # Retry-After header of "429" (None: no header)
    delay: float = 2.0  # seconds "slow" waits before answering
    full_length: bool = False  # "truncated": announce the whole body, then close mid-way
    day: str | None = None  # only requests with this `date` parameter (yyyy-mm-dd)
    code: int = 429  # envelope code of a "quota" answer
    status: int = 200  # HTTP status of a "body" answer
    body: str = "blank"  # what a "body" answer sends: a key of BODIES
    hits: int = 0  # requests this fault has answered

    def matches(
        self, kind: str | None, exchange: str | None, ticker: str | None, day: str | None = None
    ) -> bool:
        return (
            (self.times is None or self.times > 0)
            and self.endpoint in (None, kind)
            and self.exchange in (None, exchange)
            and self.ticker in (None, ticker)
            and self.day in (None, day)
        )


@dataclass
class RequestRecord:
    """One request as the server saw it; the token is never kept."""

    method: str
    path: str  # without the query string
    kind: str | None  # "list" / "daily" / "latest"; None for an unknown path
    exchange: str | None
    ticker: str | None
    params: dict[str, str]  # query parameters except token
    status: int | None = None  # HTTP status sent; None while pending or if dropped
    code: int | None = None  # envelope code, when a JSON envelope was sent
    fault: str | None = None  # kind of the fault that answered, if any
    at: float = field(default_factory=time.time)


def envelope(code: int, msg: str, data_json: str = "null") -> bytes:
    """The API's JSON envelope, ``data_json`` being already-serialised JSON text."""
    return (
        '{"msg":' + json.dumps(msg, ensure_ascii=False) + f',"code":{code},"data":{data_json}}}'
    ).encode()


def _dumps(value: Any) -> str:
    return dumps_exact(value)


class _BadRequest(Exception):
    pass


def _param_date(params: dict[str, str], name: str) -> date | None:
    value = params.get(name, "")
    if value == "":
        return None
    if not _DATE.fullmatch(value):
        raise _BadRequest(f"日期格式错误 ({name} must be yyyy-mm-dd)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _BadRequest(f"日期格式错误 ({name} is not a valid date)") from None


class FakeTsanghi:
    """Tsanghi-compatible API for tests, demos and benchmarks; a context manager.

    ``latency_ms`` (settable while running) delays every answer. The request
    log (``requests``) and faults are safe to use from any thread.
    """

    def __init__(
        self,
        universe: Universe,
        token: str = "test-token",
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
    ) -> None:
        self.universe = universe
        self.token = token
        self.host = host
        self.latency_ms = latency_ms
        self._port = port
        self._lock = threading.Lock()
        self._log: list[RequestRecord] = []
        self._faults: list[Fault] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        # Answers encoded ahead of time (see ``preencode``), by request.
        self._encoded: dict[tuple, tuple[int, int, bytes]] = {}

    # ------------------------------------------------------------- lifecycle

    def start(self) -> FakeTsanghi:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        httpd = ThreadingHTTPServer((self.host, self._port), _Handler)
        httpd.daemon_threads = True
        httpd.app = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeTsanghi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        """E.g. ``http://127.0.0.1:54321/api/fin`` (the port is known once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}{API_PREFIX}"

    def __repr__(self) -> str:
        state = "running" if self._httpd else "stopped"
        return f"FakeTsanghi({self.base_url}, {state}, {self.universe!r})"

    # ---------------------------------------------------------- request log

    @property
    def requests(self) -> list[RequestRecord]:
        """Requests received so far, oldest first (a copy of the list)."""
        with self._lock:
            return list(self._log)

    def request_count(self, kind: str | None = None) -> int:
        """Requests received, all or of one endpoint kind ("list", "daily", "latest")."""
        with self._lock:
            return sum(1 for r in self._log if kind is None or r.kind == kind)

    def reset_log(self) -> None:
        with self._lock:
            self._log.clear()

    # --------------------------------------------------------------- faults

    def add_fault(
        self,
        kind: str,
        *,
        endpoint: str | None = None,
        exchange: str | None = None,
        ticker: str | None = None,
        times: int | None = 1,
        retry_after: float | None = 1,
        delay: float = 2.0,
        full_length: bool = False,
        day: str | None = None,
        code: int = 429,
        status: int = 200,
        body: str = "blank",
    ) -> Fault:
        """Make the next ``times`` matching requests fail (``times=None``: all of them).

        Kinds: "429" (with ``Retry-After: retry_after``), "502", "503" (HTML
        error pages), "slow" (wait ``delay`` s, then answer normally), "drop"
        (close the connection without a response), "truncated" (HTTP 200 JSON
        cut in the middle; with ``full_length`` the Content-Length announces
        the whole body and the connection closes early), "malformed" (HTTP
        200, an HTML page), "envelope" (code 500 "系统繁忙"), "empty" (code 200
        with no records), "auth" (the invalid-token envelope), "404" (HTTP 404
        with a code-404 envelope, as for an unknown path), "html404" (HTTP 404,
        the HTML page of a web server), "400" (a code-400 envelope: a request
        the API refuses), "echo" (HTTP 502, a gateway page quoting the request
        URL, token included), "quota" (HTTP 200, envelope ``code`` with the
        message "token今日调用次数已用完"), "dateformat" (the normal answer with
        every date as yyyymmdd), "body" (HTTP ``status`` with a body that is
        no envelope: ``body`` "blank" (none at all), "text" (plain text), "{}",
        "[]", "html" (a web server's error page) or "echo" (plain text quoting the
        request line, token included)). ``day`` narrows a fault to
        the requests for that date. Faults are checked in the order added.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if body not in BODIES:
            raise ValueError(f"unknown body {body!r}; expected one of {tuple(BODIES)}")
        if endpoint not in (None, *ENDPOINTS):
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        fault = Fault(
            kind, endpoint, exchange, ticker, times, retry_after, delay, full_length, day, code,
            status, body,
        )  # fmt: skip
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """Faults still armed."""
        with self._lock:
            return [f for f in self._faults if f.times is None or f.times > 0]

    def _take_fault(
        self, kind: str | None, exchange: str | None, ticker: str | None, day: str | None = None
    ) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(kind, exchange, ticker, day):
                    if fault.times is not None:
                        fault.times -= 1
                    fault.hits += 1
                    return fault
        return None

    # ------------------------------------------------------------- answers

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def preencode(self, kind: str, exchange: str, params: dict[str, str]) -> None:
        """Encode the answer to this request now and serve it as it is until
        ``forget``: a benchmark's server then spends no CPU building answers while
        the client is measured. The universe must not change meanwhile."""
        answer = self._answer(kind, exchange, self.token, params)
        with self._lock:
            self._encoded[_request_key(kind, exchange, params)] = answer

    def forget(self) -> None:
        """Drop every answer encoded ahead (call it when the universe changes)."""
        with self._lock:
            self._encoded.clear()

    def _answer(
        self, kind: str | None, exchange: str | None, token: str | None, params: dict[str, str]
    ) -> tuple[int, int, bytes]:
        """(HTTP status, envelope code, body) of a normal answer."""
        if self._encoded and token is not None and hmac.compare_digest(token, self.token):
            with self._lock:
                ready = self._encoded.get(_request_key(kind, exchange, params))
            if ready is not None:
                return ready
        if kind is None or exchange is None:
            return 404, 404, envelope(404, "接口不存在 (no such endpoint)")
        if token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            return 200, 401, envelope(401, AUTH_MSG)
        try:
            if exchange not in EXCHANGES:
                raise _BadRequest(f"交易所代码无效 (unknown exchange_code {exchange!r})")
            if params.get("fmt", "json") not in ("", "json"):
                raise _BadRequest("fmt不支持 (this server answers fmt=json only)")
            data = self._data(kind, exchange, params)
        except _BadRequest as exc:
            return 200, 400, envelope(400, str(exc))
        return 200, 200, envelope(200, OK_MSG, data)

    def _data(self, kind: str, exchange: str, params: dict[str, str]) -> str:
        if kind == "list":
            return _dumps(self.universe.list_rows(exchange))
        if kind == "latest":
            day = _param_date(params, "date")
            return _dumps(self.universe.latest_rows(exchange, day))
        ticker = params.get("ticker", "")
        if not ticker:
            raise _BadRequest("ticker不能为空 (ticker is required)")
        start = _param_date(params, "start_date")
        end = _param_date(params, "end_date")
        order = params.get("order", "") or "0"
        if order not in ("0", "1", "2"):
            raise _BadRequest("order参数错误 (order must be 0, 1 or 2)")
        return self.universe.daily_json(exchange, ticker, start, end, int(order))


def _request_key(kind: str | None, exchange: str | None, params: dict[str, str]) -> tuple:
    return (kind, exchange, tuple(sorted(params.items())))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real servers
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections are closed after this many seconds
    _current: RequestRecord | None = None  # the request being answered

    def version_string(self) -> str:
        return "nginx"  # what answers in front of the real API

    @property
    def app(self) -> FakeTsanghi:
        return self.server.app  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.app._lock:
            self.app._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.app._lock:
                self.app._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the request line carries the token."""

    def do_GET(self) -> None:
        self._current = None
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (e.g. its read timeout)
        except Exception:
            traceback.print_exc()  # a bug in the test server itself: show it, answer 500
            self.close_connection = True
            if self._current is not None:
                self._current.status = 500
            try:
                page = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
                self.send_response(500)
                self.send_header("Content-Type", _HTML)
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
            except OSError:
                pass

    def _serve(self) -> None:
        app = self.app
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        params = {k: v[0] for k, v in query.items()}
        token = params.pop("token", None)
        path = url.path.rstrip("/")
        route = _ROUTE.fullmatch(path)
        kind = _KINDS[route.group(2)] if route else None
        exchange = unquote(route.group(1)) if route else None
        ticker = params.get("ticker") if kind == "daily" else None
        record = self._current = RequestRecord("GET", path, kind, exchange, ticker, params)
        app._record(record)
        fault = app._take_fault(kind, exchange, ticker, params.get("date"))
        record.fault = fault.kind if fault else None
        app._pause(app.latency_ms / 1000)

        if fault is not None:
            if fault.kind == "drop":
                self._hang_up()
                return
            if fault.kind in ("429", "502", "503"):
                status = int(fault.kind)
                headers = {}
                if status == 429 and fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                self._send(record, status, None, _HTML_PAGES[status].encode(), _HTML, headers)
                return
            if fault.kind == "malformed":
                self._send(record, 200, None, _MALFORMED_PAGE.encode(), _HTML)
                return
            if fault.kind == "envelope":
                self._send(record, 200, 500, envelope(500, BUSY_MSG), _JSON)
                return
            if fault.kind == "auth":
                self._send(record, 200, 401, envelope(401, AUTH_MSG), _JSON)
                return
            if fault.kind == "empty":  # a good envelope with no records: an upstream glitch
                self._send(record, 200, 200, envelope(200, OK_MSG, "[]"), _JSON)
                return
            if fault.kind == "404":
                self._send(record, 404, 404, envelope(404, "接口不存在 (no such endpoint)"), _JSON)
                return
            if fault.kind == "html404":
                self._send(record, 404, None, _HTML_PAGES[404].encode(), _HTML)
                return
            if fault.kind == "400":
                self._send(record, 200, 400, envelope(400, "参数错误 (bad parameter)"), _JSON)
                return
            if fault.kind == "echo":  # a gateway that quotes the request, query and all
                page = (
                    f"<html><body><h1>502 Bad Gateway</h1><p>upstream failed: GET {self.path}</p>"
                )
                self._send(record, 502, None, (page + "</body></html>").encode(), _HTML)
                return
            if fault.kind == "quota":
                self._send(record, 200, fault.code, envelope(fault.code, QUOTA_MSG), _JSON)
                return
            if fault.kind == "body":
                content, content_type = BODIES[fault.body]
                content = content.replace(b"{path}", self.path.encode())
                self._send(record, fault.status, None, content, content_type)
                return
            if fault.kind == "slow":
                app._pause(fault.delay)

        status, code, body = app._answer(kind, exchange, token, params)
        if fault is not None and fault.kind == "dateformat":
            body = _ISO_DATE_FIELD.sub(rb'"date":"\1\2\3"', body)
        if fault is not None and fault.kind == "truncated":
            cut = len(body) // 2
            while cut > 0 and body[cut] & 0xC0 == 0x80:  # not inside a UTF-8 character
                cut -= 1
            length = len(body) if fault.full_length else cut
            self._send(record, status, code, body[:cut], _JSON, length=length)
            if fault.full_length:
                self._hang_up()
            return
        self._send(record, status, code, body, _JSON)

    def _hang_up(self) -> None:
        """Close the connection at once, whatever the client still expects."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(
        self,
        record: RequestRecord,
        status: int,
        code: int | None,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        record.status, record.code = status, code
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


# ---------------------------------------------------------------------- CLI


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8787, show_default=True, help="Port (0: any free port).")
@click.option("--etfs", "n_etfs", type=int, help="Number of ETFs [default: 40; 1200 with --full].")
@click.option("--full", is_flag=True, help="Benchmark universe: 1,200 ETFs since 2005 (~4M rows).")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First day of data.")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="Last day of data.")
@click.option("--seed", default=0, show_default=True, help="Seed of the synthetic data.")
@click.option("--token", default="demo-token", show_default=True, help="Token clients must send.")
@click.option("--latency-ms", default=0.0, show_default=True, help="Delay added to every answer.")
@click.option("--warm", is_flag=True, help="Generate every history before serving.")
def serve(
    host: str,
    port: int,
    n_etfs: int | None,
    full: bool,
    start: Any,
    end: Any,
    seed: int,
    token: str,
    latency_ms: float,
    warm: bool,
) -> None:
    """Serve a Tsanghi-compatible ETF API with deterministic synthetic data.

    Runs in the foreground until Ctrl-C or SIGTERM. Example:

        python -m fakeapi --port 8787 --full

    then point the client at it with TSANGHI_BASE_URL=http://127.0.0.1:8787/api/fin
    and TSANGHI_TOKEN=demo-token.
    """
    kwargs: dict[str, Any] = {"seed": seed}
    if n_etfs is not None:
        kwargs["n_etfs"] = n_etfs
    if start is not None:
        kwargs["start"] = start.date()
    if end is not None:
        kwargs["end"] = end.date()
    try:
        universe = Universe.full(**kwargs) if full else Universe(**kwargs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if warm:
        universe.row_count()
    server = FakeTsanghi(universe, token=token, host=host, port=port, latency_ms=latency_ms)
    try:
        server.start()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    stopping = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        days = len(universe.trading_days())
        click.echo(
            f"Tsanghi-compatible test API on {server.base_url} "
            f"({universe.n_etfs} ETFs, {days} trading days); token from --token"
        )
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped")
