"""The one HTTP client of the tool: timeouts, retries with backoff, envelope checks.

The Tsanghi API wraps every answer in ``{"msg", "code", "data"}``; ``code`` other
than 200 is an error whatever the HTTP status. Transient trouble (429, 5xx, HTML
error pages, timeouts, dropped connections, cut-off JSON, a busy envelope) is
retried; a rejected token stops the whole run at once.

The token travels as a query parameter, so it appears in request URLs: nothing
here lets a URL, or an exception text that quotes one, out without scrubbing.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import polars as pl
import requests

from etl.errors import AuthError
from etl.settings import Settings
from etl.transform import FIELDS, envelope_dtype

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
AUTH_STATUS = {401, 403}
# Envelope messages that mean "your token is no good" rather than "try later".
AUTH_WORDS = re.compile(r"token|令牌|密钥|unauthori[sz]ed|forbidden|鉴权|认证|权限", re.IGNORECASE)
MAX_RETRY_AFTER = 60.0
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s'\")]+", re.IGNORECASE)


@dataclass
class Fetched:
    """One request's final outcome: the raw answer as received, or why it failed."""

    endpoint: str  # "list", "daily" or "latest"
    exchange: str
    ticker: str | None
    params: dict[str, str]  # request parameters, token excluded
    fetched_at: datetime
    attempts: int
    http_status: int | None = None
    body: str | None = None  # the response text as received
    rows: int = 0  # len(data) of a good envelope
    error: str | None = None  # None when the answer was good

    @property
    def ok(self) -> bool:
        return self.error is None


class _RateLimiter:
    """Spaces request starts evenly so all workers together stay under a rate."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            time.sleep(start - now)


class _Transient(Exception):
    def __init__(
        self,
        reason: str,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.status, self.body, self.retry_after = status, body, retry_after


class TsanghiClient:
    """GETs against the Tsanghi API; thread-safe, one per run."""

    def __init__(self, settings: Settings) -> None:
        self._token = settings.require_token()
        self._base = settings.base_url.rstrip("/")
        self._timeout = (settings.connect_timeout, settings.read_timeout)
        self._attempts = max(1, settings.max_attempts)
        self._backoff = settings.backoff
        self._limiter = _RateLimiter(settings.rate_limit)
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=4, pool_maxsize=max(8, settings.workers)
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = "etf-sync"
        self.requests_made = 0
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> TsanghiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scrub(self, text: str) -> str:
        """Remove the token from any text that may quote a request URL."""
        return _TOKEN_IN_TEXT.sub(r"\1***", text.replace(self._token, "***"))

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
        last: _Transient | None = None
        for attempt in range(1, self._attempts + 1):
            if last is not None:
                self._sleep_before(attempt, last)
            result = Fetched(endpoint, exchange, ticker, params, datetime.now(UTC), attempt)
            try:
                result.http_status, result.body, result.rows = self._once(path, params, endpoint)
                return result
            except _Transient as exc:
                last = exc
                log.debug("%s %s %s attempt %d: %s", endpoint, exchange, ticker or "", attempt, exc)
        assert last is not None
        result.http_status, result.body = last.status, last.body
        result.error = f"{last} (after {self._attempts} attempts)"
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
        except requests.Timeout:
            raise _Transient("timed out") from None
        except requests.RequestException as exc:
            # Exception texts quote the URL, token included: keep only the kind.
            raise _Transient(f"connection failed ({type(exc).__name__})") from None
        status = resp.status_code
        if status in AUTH_STATUS:
            raise AuthError(self._auth_message(f"HTTP {status}"))
        if status in RETRY_STATUS or status >= 500:
            raise _Transient(f"HTTP {status}", status, body, _retry_after(resp))
        code, msg, rows = _envelope(body, endpoint)
        if code is None:
            raise _Transient(f"HTTP {status} without the API envelope", status, body)
        if code != "200":
            if code in {"401", "403"} or AUTH_WORDS.search(msg):
                raise AuthError(self._auth_message(f"code {code}: {self.scrub(msg)}"))
            raise _Transient(f"API error code {code}: {self.scrub(msg)}", status, body)
        if status != 200:
            raise _Transient(f"HTTP {status}", status, body)
        if rows is None:
            raise _Transient(f"HTTP {status}: 'data' is not a list of records", status, body)
        return status, body, rows

    def _auth_message(self, detail: str) -> str:
        return (
            f"the Tsanghi API rejected the token ({detail}); check TSANGHI_TOKEN "
            "(a bad or expired token), then run again"
        )

    def _sleep_before(self, attempt: int, last: _Transient) -> None:
        delay = self._backoff * 2 ** (attempt - 2) * (1 + random.random() / 2)
        if last.retry_after is not None:
            delay = max(delay, last.retry_after)
        time.sleep(min(delay, MAX_RETRY_AFTER))


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _envelope(body: str, endpoint: str) -> tuple[str | None, str, int | None]:
    """(code, msg, number of records) of an answer; records None if not decodable.

    A good answer is decoded with the very schema the transform uses, so what
    passes here cannot fail the batch later. Error answers, whose ``data`` may
    be anything, are looked at with the json module only to read code and msg.
    """
    try:
        env = pl.Series([body]).str.json_decode(envelope_dtype(FIELDS[endpoint])).struct
        code = env.field("code")[0]
        return code, env.field("msg")[0] or "", env.field("data").list.len().fill_null(0)[0]
    except pl.exceptions.PolarsError:
        pass
    try:
        loose = json.loads(body)
    except ValueError:
        raise _Transient("the answer is not JSON", None, body) from None
    if not isinstance(loose, dict) or "code" not in loose:
        return None, "", None
    return str(loose["code"]), str(loose.get("msg") or ""), None
