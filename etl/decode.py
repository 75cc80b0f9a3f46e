"""A fast exact decode of daily answers (pyarrow), for the answers it reads as the text path does.

``transform.explode_bodies`` decodes every record field as text, so a price
keeps its own digits; but polars' JSON decode is about half of what normalize
costs. pyarrow's JSON reader reads a JSON number straight into decimal128 from
its digits (never through float), with less CPU. It refuses a whole read for
one value it cannot hold (more fraction digits than the scale, other than
zeros; a number where text is expected; a duplicate key; bad JSON): the caller
then takes the text path for that slice. Where it succeeds, a value is the
same decimal the text path gives: a number of at most 15 significant digits
comes back from f64 as its own digits, a longer one is quoted first, and
neither is cut while its fraction fits the scale.

Where the two readers do not agree, the answers never reach pyarrow
(``text_only``): a number with an exponent (the text path cuts a quoted
mantissa at the scale, pyarrow reads the exact value), a JSON string where a
number is expected (the text path strips blanks before parsing, and the two
parsers accept different spellings), more whole digits than the decimal holds
(pyarrow overflows without an error), any backslash escape, and a line break
(pyarrow reads one answer per line).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.json as pajson


def text_only(numbers: list[str], decimal: pl.Decimal) -> str:
    """A regex matching an answer pyarrow must not read (see the module's docstring).

    ``[0-9.][eE]``: an exponent (no key or ordinary value has a digit before
    an e); ``"open"\\s*:\\s*"``: a string where a number is expected; a run
    of more digits than ``decimal`` holds before its point: pyarrow 26 reads
    ``1`` followed by 30 zeros into decimal128(38, 10) without an error, as
    another number."""
    keys = "|".join(numbers)
    whole = decimal.precision - decimal.scale
    return rf'[0-9.][eE]|[\\\r\n]|[0-9]{{{whole + 1},}}|"(?:{keys})"\s*:\s*"'


def records(
    answers: pl.DataFrame, texts: list[str], numbers: list[str], decimal: pl.Decimal
) -> pl.DataFrame | None:
    """The records of the good answers in ``answers`` (RAW_SCHEMA), one row each,
    as ``transform.explode_bodies`` gives them except that the ``numbers``
    fields are already ``decimal`` and ``row`` is null; None where any answer
    must take the text path.

    Each answer is wrapped as ``{"b": <answer>}`` on a line of its own: a
    line that is not exactly one JSON value then fails the read, so line i is
    answer i (an empty answer or two objects in one cannot shift the rest).
    """
    good = answers.filter(pl.col("error").is_null() & pl.col("body").is_not_null())
    if good.is_empty():
        return None
    if good["body"].str.contains(text_only(numbers, decimal)).any():
        return None
    # One string per line, newline included: their values buffer is the input.
    lines = good.select(pl.concat_str(pl.lit('{"b":'), "body", pl.lit("}\n"))).to_series()
    text = _values(lines.to_arrow())
    number = pa.decimal128(decimal.precision, decimal.scale)
    record = pa.struct([(f, pa.string()) for f in texts] + [(f, number) for f in numbers])
    schema = pa.schema([("b", pa.struct([("data", pa.list_(record))]))])
    try:
        table = pajson.read_json(
            text,
            parse_options=pajson.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowException:  # a value it cannot hold, or not JSON: the text path decides
        return None
    if table.num_rows != good.height:
        return None
    data = pl.from_arrow(table).select(pl.col("b").struct.field("data").alias("r")).to_series()
    row = pl.Struct({f: pl.String for f in [*texts, *numbers]})
    return (
        good.select(
            "endpoint",
            "exchange",
            pl.col("ticker").alias("req_ticker"),
            data,
        )
        .explode("r")
        .filter(pl.col("r").is_not_null())
        .with_columns(pl.col("r").struct.unnest(), pl.lit(None, row).alias("row"))
        .drop("r")
    )


def _values(strings: pa.Array) -> pa.Buffer:
    """The bytes of every string of ``strings``, back to back (no copy)."""
    if not pa.types.is_large_string(strings.type):
        strings = strings.cast(pa.large_string())
    offsets = strings.buffers()[1]
    first, last = (
        int.from_bytes(offsets[8 * i : 8 * i + 8], "little", signed=True)
        for i in (strings.offset, strings.offset + len(strings))
    )
    return strings.buffers()[2].slice(first, last - first)
