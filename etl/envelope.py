"""The API's envelope ``{"msg", "code", "data"}``, decoded with every record field as text.

One decoding for everyone who reads an answer: the HTTP client checks each
answer as it arrives with the very schema the transform later decodes it
with, so what passes the client cannot fail the batch later. Pure polars,
no I/O: the client and normalize both import it, neither imports the other.
"""

from __future__ import annotations

import polars as pl

DAILY_TEXTS = ["ticker", "date"]
DAILY_NUMBERS = ["open", "high", "low", "close", "volume"]
DAILY_FIELDS = DAILY_TEXTS + DAILY_NUMBERS
LIST_FIELDS = ["ticker", "name", "is_active", "exchange_code", "country_code", "currency_code"]
FIELDS = {"list": LIST_FIELDS, "daily": DAILY_FIELDS, "latest": DAILY_FIELDS}


# A JSON number in value position: after a key and a colon. The key's closing
# quote follows a word character, so it is never an escaped quote inside a
# string, nor the opening quote of a string value that starts with ":1".
# Quoting the number turns it into a JSON string of its own digits before any
# decoder sees it. (A key ending in a non-word character is not matched: its
# numbers are decoded as before. Every key of the API is a word.)
_NUMBER_VALUE = r'(\w"\s*:\s*)(-?[0-9][0-9.eE+-]*)'
# A run of 16 or more digits and points: a number with more significant
# digits than f64 keeps exactly (15). Only answers holding one need quoting.
LONG_NUMBER = r"[0-9.]{16,}"


def needs_quoting(body: pl.Expr) -> pl.Expr:
    """Whether an answer holds a number that would not survive f64."""
    return body.str.contains(LONG_NUMBER)


def decode_envelopes(body: pl.Expr, fields: list[str], quote: bool = True) -> pl.Expr:
    """JSON answer text -> the envelope struct, every record field as its literal text.

    polars decodes a JSON number through f64 even into ``pl.String``
    (``2.34499999999999997`` becomes ``2.3449999999999998``), so with ``quote``
    every number in value position is first quoted as the string of its own
    digits. That pass costs more than the decode itself; a number of at most
    15 significant digits comes back from f64 as its own shortest text, so
    answers without a long number (``needs_quoting``) may skip it.
    """
    if quote:
        body = body.str.replace_all(_NUMBER_VALUE, '${1}"${2}"')
    return body.str.json_decode(envelope_dtype(fields))


def decode_bodies(frame: pl.DataFrame, fields: list[str], *keep: str) -> pl.DataFrame:
    """The envelope (column ``env``) of every answer in ``frame`` (column
    ``body``), with the ``keep`` columns; quoting only the answers that need it.
    Which ones is looked up once: the scan reads every byte of every answer."""
    long = frame.select(needs_quoting(pl.col("body"))).to_series()
    return pl.concat(
        [
            frame.filter(~long).select(
                *keep, decode_envelopes(pl.col("body"), fields, quote=False).alias("env")
            ),
            frame.filter(long).select(*keep, decode_envelopes(pl.col("body"), fields).alias("env")),
        ],
        how="vertical",
    )


def envelope_dtype(fields: list[str]) -> pl.Struct:
    """The API envelope with every record field as text (see decode_envelopes)."""
    return pl.Struct(
        {
            "code": pl.String,
            "msg": pl.String,
            "data": pl.List(pl.Struct({f: pl.String for f in fields})),
        }
    )
