"""The sink's numeric codec against PostgreSQL's own text of the same values."""

from __future__ import annotations

import random
from decimal import Decimal

import asyncpg
import pytest

from tickwire_timescale import codec

pytestmark = pytest.mark.anyio

FIXED = [
    "0",
    "0.0",
    "-0",
    "-0.00",
    "0E-8",
    "0E+3",
    "1",
    "-1",
    "10",
    "9999",
    "10000",
    "12300",
    "100000000",
    "0.1",
    "1.5",
    "1000.1",
    "10000.0001",
    "10101.80000000",
    "0.00130000",
    "0.0001",
    "0.00001",
    "-0.000012340",
    "-99999.9999",
    "1E-10",
    "-1E-7",
    "1E+10",
    "1.23E+5",
    "5E+20",
    "123456789012345678901234567890.123456789012345678",
    "NaN",
    "Infinity",
    "-Infinity",
]


def _values() -> list[str]:
    rng = random.Random(3)
    out = list(FIXED)
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 30)))
        out.append(f"{rng.choice(['', '-'])}{digits}E{rng.randint(-40, 20)}")
    return out


async def test_encode_and_decode_equal_postgresql_text(pg: asyncpg.Connection, dsn: str) -> None:
    values = _values()
    rows = await pg.fetch(
        "SELECT v::numeric::text FROM unnest($1::text[]) WITH ORDINALITY AS t(v, i) ORDER BY i",
        values,
    )
    expected = [r[0] for r in rows]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.set_type_codec(
            "numeric",
            schema="pg_catalog",
            encoder=codec.encode,
            decoder=codec.decode,
            format="binary",
        )
        got = await conn.fetch(
            "SELECT x::text, x FROM unnest($1::numeric[]) WITH ORDINALITY AS t(x, i) ORDER BY i",
            [Decimal(v) for v in values],
        )
        array = await conn.fetchval("SELECT '{{1.50,2},{3.000,-4E-9}}'::numeric[]")
        assert await conn.fetchval("SELECT $1::numeric[]::text", [[Decimal("1.50")]]) == (
            "{{1.50}}"
        )
    finally:
        await conn.close()
    for value, want, (text, back) in zip(values, expected, got, strict=True):
        assert text == want, value  # encoded exactly: PostgreSQL prints what Decimal said
        if want == "NaN":
            assert back.is_nan()
        else:  # decoded exactly, scale kept: the Decimal of PostgreSQL's own text
            assert str(back) == str(Decimal(want)), value
    assert array == [[Decimal("1.50"), Decimal("2")], [Decimal("3.000"), Decimal("-4E-9")]]
    assert str(array[1][0]) == "3.000"


def test_cache_keeps_the_scale_apart() -> None:
    # Decimal("1.0") == Decimal("1.00"), but they are different numerics.
    assert codec.encode(Decimal("1.0")) != codec.encode(Decimal("1.00"))
    assert codec.decode(codec.encode(Decimal("1.00"))).as_tuple().exponent == -2


def test_float_is_refused() -> None:
    with pytest.raises(TypeError):
        codec.encode(1.5)
