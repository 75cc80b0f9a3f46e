"""The one HTTP client of the tool: timeouts, retries with backoff, envelope checks.

The Tsanghi API wraps every answer in ``{"msg", "code", "data"}``; ``code`` other
than 200 is an error whatever the HTTP status. Each failed answer falls in one
class (``classify``), and only what can succeed on a later attempt is retried:

- *transient*: HTTP 408/425/429/5xx whatever their body (an empty one, an
  HTML page, text, ``{}``), timeouts, dropped connections, an HTTP 200 whose
  body is empty, cut off, not JSON or not the envelope, a busy or unknown error
  envelope, "too frequent" wording: retried with backoff, then the request fails;
- *client*: any other HTTP 4xx (an unknown address: 404, an HTML 404 page, an
  empty 404) and envelope codes 4xx such as 400: the request fails at once;
- *unreachable*: nothing answers at the base URL's host. A refused connection
  (or a connect timeout) is tried twice more after a fraction of a second, in
  case a server was restarting; a host name that does not resolve is not
  retried. Either says so ("cannot connect to <host>: connection refused",
  "cannot resolve host <host>"), never that the token was refused;
- *auth*: HTTP 401/403, envelope code 401/403, or wording that says the token
  is invalid or expired: the whole run stops (``AuthError``);
- *quota*: wording that says the token's call quota is used up (for example
  "今日调用次数已用完", "quota exceeded"): no later request can succeed before
  it resets, so the request fails at once and the circuit breaker opens: the
  extract stops, what arrived is kept, and the run ends failed. A rate-limit
  message ("请求过于频繁", "rate limit exceeded") is transient instead.

Every failed request says what came back: its HTTP status and what the body
was ("HTTP 503 with an empty body", "HTTP 200 with a body that is not JSON:
'…'"). A wait between attempts ends at once when the run is told to stop.

The token travels as a query parameter, so it appears in request URLs: nothing
here lets a URL, an exception text or an error body that quotes one out
without scrubbing.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

import polars as pl
import requests
import urllib3

from etl.answers import Fetched
from etl.breaker import Breaker
from etl.envelope import FIELDS, decode_bodies
from etl.errors import AuthError
from etl.priority import lower_priority
from etl.secrets import mask_url, scrub
from etl.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 425, 429}  # and every 5xx
AUTH_STATUS = {401, 403}
# Wording of an invalid or expired token (a quota message may name the token too).
AUTH_WORDS = re.compile(
    r"(token|令牌|密钥|api[ _-]?key)\s*(无效|错误|不正确|不存在|非法|已?过期|已?失效)"
    r"|(无效|错误|非法|过期|失效)的?\s*(token|令牌|密钥)"
    r"|invalid\s+(api[ _-]?)?(token|key)|(token|key)\s+(is\s+|has\s+)?(been\s+)?(invalid|expired|not valid)"
    r"|expired\s+(token|key)|unauthori[sz]ed|authentication failed|认证失败|鉴权失败|未授权",
    re.IGNORECASE,
)
# Wording of a used-up call quota: retrying before it resets cannot succeed.
QUOTA_WORDS = re.compile(
    r"quota|配额|额度|次数.{0,8}(用完|用尽|耗尽|不足|上限|超)|已用完|已用尽|已耗尽"
    r"|daily\s+(request\s+|call\s+)?limit",
    re.IGNORECASE,
)
MAX_RETRY_AFTER = 60.0
# A host that refuses connections is tried this many times in all, CONNECT_BACKOFF
# seconds apart (doubling): a server restarting is back within a second, a
# wrong port or a stopped service will not be, and says so at once.
CONNECT_ATTEMPTS = 3
CONNECT_BACKOFF = 0.25
# How the request failures that mean "nothing answers there" begin.
UNREACHABLE = ("cannot connect to ", "cannot resolve host ")
# Every answer is decoded (``_envelope``) on this one thread, whichever worker
# fetched it: polars' allocator keeps the pages a thread freed for that thread,
# so decoding on every worker left each one holding a decode's worth (the peak
# of a catch-up run was some 60 MB higher, and still 20 MB higher with the
# workers taking turns on a lock). Decoding is a small share of a request's time.
_DECODER = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="decode", initializer=lower_priority
)
_TITLE = re.compile(r"<(title|h1)[^>]*>(.*?)</\1>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


class _RateLimiter:
    """Spaces request starts evenly so all workers together stay under a rate."""

    def __init__(self, per_second: float, stop: threading.Event) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()
        self._stop = stop

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            self._stop.wait(start - now)


def classify(http_status: int | None, code: str | None, msg: str) -> str:
    """The class of an answer: "ok", "transient", "client", "auth" or "quota".

    ``code`` and ``msg`` come from the JSON envelope (None and "" without one).
    Unknown codes and wording are transient: retried, never fatal.
    """
    if http_status == 200 and code == "200":
        return "ok"  # whatever the message says (it may mention the quota left)
    if QUOTA_WORDS.search(msg):
        return "quota"
    if http_status in AUTH_STATUS or code in {"401", "403"} or AUTH_WORDS.search(msg):
        return "auth"
    if http_status is not None and (http_status in RETRY_STATUS or http_status >= 500):
        return "transient"
    if http_status is not None and 400 <= http_status < 500:
        return "client"
    if code is not None and code.isdigit() and 400 <= int(code) < 500:
        return "transient" if int(code) in RETRY_STATUS else "client"
    return "transient"


class _Failure(Exception):
    """One attempt failed; ``kind`` says whether another attempt may succeed."""

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
        kind: str = "transient",
    ) -> None:
        super().__init__(reason)
        self.status, self.body, self.retry_after, self.kind = status, body, retry_after, kind


class TsanghiClient:
    """GETs against the Tsanghi API; thread-safe, one per run.

    ``stop`` is the run's stop flag: once set, a wait between attempts ends at
    once and no further attempt is made.
    """

    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        self._token = settings.require_token()
        self._base = settings.base_url.rstrip("/")
        self._host = urlsplit(self._base).netloc.rpartition("@")[2]  # never the userinfo
        self._stop = stop if stop is not None else threading.Event()
        self._connect_timeout = settings.connect_timeout
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._attempts = max(1, settings.max_attempts)
        self._backoff = settings.backoff
        self._limiter = _RateLimiter(settings.rate_limit, self._stop)
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=max(8, settings.workers)
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "etf-sync"
        self.requests_made = 0
        self._count_lock = threading.Lock()
        # One per run: every request's outcome counts; once open, nothing more is sent.
        self.breaker = Breaker(
            settings.breaker_consecutive,
            settings.breaker_failed_share,
            settings.breaker_min_requests,
        )

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> TsanghiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scrub(self, text: str) -> str:
        """Remove the token from any text that may quote a request URL."""
        return scrub(text, (self._token,))

    # -- endpoints -------------------------------------------------------------

    def etf_list(self, exchange: str) -> Fetched:
        return self._get("list", exchange, None, f"/etf/{exchange}/list", {})

    def daily(self, exchange: str, ticker: str, start: str | None, end: str | None) -> Fetched:
        params = {"ticker": ticker, "order": "1"}
        if start:
            params["start_date"] = start
        if end:
            params["end_date"] = end
        return self._get("daily", exchange, ticker, f"/etf/{exchange}/daily", params)

    def latest(self, exchange: str, day: str | None = None) -> Fetched:
        params = {"date": day} if day else {}
        return self._get("latest", exchange, None, f"/etf/{exchange}/daily/latest", params)

    # -- machinery -------------------------------------------------------------

    def _get(
        self, endpoint: str, exchange: str, ticker: str | None, path: str, params: dict[str, str]
    ) -> Fetched:
        if self.breaker.open:
            return Fetched(
                endpoint, exchange, ticker, params, datetime.now(UTC), 0,
                error=f"not sent: {self.breaker.reason}",
            )  # fmt: skip
        last: _Failure | None = None
        stopped = False
        for attempt in range(1, self._attempts + 1):
            if last is not None and not self._wait_before(attempt, last):
                stopped = True
                break
            result = Fetched(endpoint, exchange, ticker, params, datetime.now(UTC), attempt)
            try:
                result.http_status, body, result.rows = self._once(path, params, endpoint)
                # A good answer is data: only a quoted request URL (token=...) is
                # scrubbed from it, by its place, never the token's text wherever
                # it occurs (a short token such as "demo" would cut field names).
                result.body = scrub(body) if "token=" in body else body
                self.breaker.record(True)
                return result
            except _Failure as exc:
                last = exc
                log.debug("%s %s %s attempt %d: %s", endpoint, exchange, ticker or "", attempt, exc)
                if exc.kind not in ("transient", "unreachable") or (
                    exc.kind == "unreachable" and attempt >= CONNECT_ATTEMPTS
                ):
                    break
        assert last is not None
        # The body is persisted in the snapshot: an error page may echo the URL, token and all.
        result.http_status = last.status
        result.body = self.scrub(last.body) if last.body is not None else None
        if stopped:
            result.error = f"{last} (the run was stopped before attempt {result.attempts + 1})"
        elif last.kind in ("transient", "unreachable"):
            result.error = f"{last} (after {result.attempts} attempts)"
        else:
            result.error = f"{last} (not retried)"
        if stopped:
            return result  # not the API's failure: the breaker does not count it
        if last.kind == "quota":
            self.breaker.trip(
                f"the API's call quota for this token is used up ({last}); "
                "what arrived is kept: run again once the quota resets"
            )
        self.breaker.record(False, result.error)
        return result

    def _once(self, path: str, params: dict[str, str], endpoint: str) -> tuple[int, str, int]:
        self._limiter.wait()
        with self._count_lock:
            self.requests_made += 1
        # -v shows every request; the token is added below, never logged.
        log.debug("GET %s%s%s", self._base, path, "?" + urlencode(params) if params else "")
        try:
            resp = self._session.get(
                self._base + path, params={**params, "token": self._token}, timeout=self._timeout
            )
            body = resp.text
        except requests.ConnectTimeout:
            raise _Failure(
                f"cannot connect to {self._host}: no answer within {self._connect_timeout:g} s",
                kind="unreachable",
            ) from None
        except requests.Timeout:
            raise _Failure("timed out") from None
        except requests.RequestException as exc:
            # Exception texts quote the URL, token included: keep only the kind.
            raise self._connection_failure(exc) from None
        status = resp.status_code
        code, msg, rows = _DECODER.submit(_envelope, body, endpoint).result()
        kind = classify(status, code, msg)
        said = f": {self.scrub(msg)}" if msg else ""
        # Without the envelope only the status and the body itself can tell.
        came = "" if code is not None else f" with {describe_body(self.scrub(body))}"
        if kind == "auth":
            detail = f"code {code}{said}" if code not in (None, "200") else f"HTTP {status}"
            raise AuthError(self._auth_message(detail))
        if kind == "quota":
            what = f"code {code}" if code is not None else f"HTTP {status}"
            raise _Failure(f"{what}{said}", status, body, kind="quota")
        if status != 200 or kind == "client":
            if kind == "client" and status == 404:
                raise _Failure(
                    f"HTTP 404{came}: no such address {mask_url(self._base)}{path}; "
                    "check TSANGHI_BASE_URL",
                    status, body, kind="client",
                )  # fmt: skip
            if kind == "client" and status != 200:
                raise _Failure(f"HTTP {status}{came}{said}", status, body, kind="client")
            if kind == "client":
                raise _Failure(f"API error code {code}{said}", status, body, kind="client")
            raise _Failure(f"HTTP {status}{came}{said}", status, body, _retry_after(resp))
        if code is None:
            raise _Failure(f"HTTP {status}{came}", status, body)
        if code != "200":
            raise _Failure(f"API error code {code}{said}", status, body)
        if rows is None:
            raise _Failure(f"HTTP {status}: 'data' is not a list of records", status, body)
        return status, body, rows

    def _auth_message(self, detail: str) -> str:
        return (
            f"the Tsanghi API rejected the token ({detail}); check TSANGHI_TOKEN "
            "(a bad or expired token), then run again"
        )

    def _connection_failure(self, exc: requests.RequestException) -> _Failure:
        """What a request that got no HTTP answer at all says, and whether to retry it."""
        chain = _chain(exc)
        cause = chain[-1]
        if isinstance(cause, socket.gaierror) and cause.errno != socket.EAI_AGAIN:
            # The name does not exist: asking again gives the same answer.
            return _Failure(f"cannot resolve host {self._host}", kind="dns")
        if isinstance(cause, socket.gaierror):
            reason = f"cannot resolve host {self._host} (the name server did not answer)"
            return _Failure(reason, kind="unreachable")
        if isinstance(cause, ConnectionRefusedError):
            reason = f"cannot connect to {self._host}: connection refused"
            return _Failure(reason, kind="unreachable")
        connecting = any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in chain)
        if connecting and isinstance(cause, OSError) and cause.strerror:
            reason = f"cannot connect to {self._host}: {cause.strerror.lower()}"
            return _Failure(reason, kind="unreachable")
        return _Failure(f"connection to {self._host} lost before an answer ({type(exc).__name__})")

    def _wait_before(self, attempt: int, last: _Failure) -> bool:
        """Wait before ``attempt``; False if the run was told to stop meanwhile."""
        if last.kind == "unreachable":
            delay = min(self._backoff, CONNECT_BACKOFF) * 2 ** (attempt - 2)
        else:
            delay = self._backoff * 2 ** (attempt - 2) * (1 + random.random() / 2)
        if last.retry_after is not None:
            delay = max(delay, last.retry_after)
        return not self._stop.wait(min(delay, MAX_RETRY_AFTER))


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _chain(exc: BaseException) -> list[BaseException]:
    """A requests exception and what it wraps, outermost first (through urllib3's
    MaxRetryError and NewConnectionError down to the socket's own error)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException):
            inner = current.__cause__ or next(
                (a for a in current.args if isinstance(a, BaseException)), None
            )
        current = inner
    return chain


def describe_body(body: str) -> str:
    """What a body that is not the API's envelope was, in a few words."""
    text = body.strip()
    if not text:
        return "an empty body"
    if text.startswith("<") or "<html" in text[:200].lower():
        found = _TITLE.search(text)
        title = " ".join(_TAG.sub(" ", found.group(2)).split()) if found else ""
        return f"an HTML page ({_cut(title)})" if title else "an HTML page"
    try:
        json.loads(text)
    except ValueError:
        return f"a body that is not JSON: '{_cut(text)}'"
    return f"JSON that is not the API envelope: {_cut(text)}"


def _cut(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _envelope(body: str, endpoint: str) -> tuple[str | None, str, int | None]:
    """(code, msg, number of records) of an answer; records None if not decodable.

    A good answer is decoded with the very schema the transform uses, so what
    passes here cannot fail the batch later. Error answers, whose ``data`` may
    be anything, are looked at with the json module only to read code and msg.
    Code None: the body is not the envelope (empty, not JSON, ``{}``, ``[]``).
    """
    if not body.strip():
        return None, "", None
    try:
        # Decoded as normalize decodes a part, long numbers quoted only where
        # there are some; all of it in polars, which releases the GIL the
        # fetchers and the load need meanwhile.
        frame = decode_bodies(pl.DataFrame({"body": [body]}), FIELDS[endpoint])
        env = frame["env"].struct
        code = env.field("code")[0]
        return code, env.field("msg")[0] or "", env.field("data").list.len().fill_null(0)[0]
    except pl.exceptions.PolarsError:
        pass
    try:
        loose = json.loads(body)
    except ValueError:
        return None, "", None
    if not isinstance(loose, dict) or loose.get("code") is None:
        return None, "", None
    return str(loose["code"]), str(loose.get("msg") or ""), None
