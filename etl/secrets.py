"""The one scrubber: secrets out of every text a user, a log, a snapshot or a table sees.

Two secrets travel in text. The database password sits in URLs (and `password=`
in connection strings) that drivers echo in their messages; the API token is a
`token=` query parameter of every request URL, quoted by HTTP errors and error
pages. Both are masked by their place, never by searching for the secret's text
in general, so a short password or a token such as "demo" cannot cut the words
around it. Where a caller knows a secret was handed to a library that may quote
it anywhere (the token in a request exception), it names it to `scrub`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MASK = "***"

# `user:password@` inside URL-shaped text (driver messages echo the URL they were given):
# the password is found by its place between `scheme://user:` and the `@` before the host.
# Greedy up to the last `@` before the path, so a raw `@` inside the password is covered.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)(?P<pw>[^\s/?#]+)@", re.I)
# `password=...` as a URL query parameter or in a key=value connection string.
_PARAM_PASSWORD = re.compile(
    r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.I
)
# `token=...` as a query parameter of a quoted request URL.
_TOKEN_PARAM = re.compile(r"(token=)[^&\s'\")]+", re.I)


def mask_url(url: str) -> str:
    """`url` (or any text holding URLs) with every password replaced by `***`.

    Passwords are found by their place: in the userinfo of a URL and as the value of a
    `password` parameter, never by searching for the password's text, so a short
    password cannot mangle the words around it."""
    masked = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + "@", url)
    return _PARAM_PASSWORD.sub(lambda m: m["head"] + MASK, masked)


def scrub(
    text: str,
    known: Iterable[str | None] = (),
    urls: Mapping[str, str] | None = None,
) -> str:
    """`text` with every secret masked: `token=` parameters and URL passwords by their
    place, each of `known` (the API token) wherever it occurs, and each URL of `urls`
    (one a driver was given, and may echo whole) replaced by its shown form."""
    for url, shown in (urls or {}).items():
        text = text.replace(url, shown)
    for secret in known:
        if secret:  # an empty secret would match between every two characters
            text = text.replace(secret, MASK)
    return mask_url(_TOKEN_PARAM.sub(r"\1" + MASK, text))
