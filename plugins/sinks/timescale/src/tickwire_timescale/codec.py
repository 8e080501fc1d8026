"""The sink's binary ``numeric`` codec: exact, and several times cheaper than asyncpg's own.

asyncpg encodes a :class:`~decimal.Decimal` for binary COPY through ``Decimal.as_tuple()``,
which builds a named tuple and a tuple of single digits per value: measured here at about
2.4 us per value, i.e. most of the client's time in a COPY of trades (two numerics a row).
This codec keys on ``str(value)`` (Decimal's string is exact: sign, coefficient and exponent,
so ``1.0`` and ``1.00`` stay different, unlike ``Decimal`` equality, which calls them equal)
and keeps the encoded bytes of recently seen values, since prices and sizes repeat a lot in
market data; a value not seen yet is encoded from its string with slicing and ``int``.

Wire format (PostgreSQL ``numeric_send``): ``int16 ndigits, int16 weight, uint16 sign, uint16
dscale`` then ``ndigits`` base-10000 digits, most significant first; the value is
``sum(digit[i] * 10000 ** (weight - i))``; ``dscale`` is the number of decimal digits after the
point (kept, so ``10101.80000000`` comes back with its zeros).

Decoding returns the same ``Decimal`` as ``Decimal(<PostgreSQL's text of the value>)``.
"""

from __future__ import annotations

import struct
from decimal import Decimal

_HEADER = struct.Struct("!hhHH")
_POS, _NEG, _NAN, _PINF, _NINF = 0x0000, 0x4000, 0xC000, 0xD000, 0xF000
_SPECIAL = {
    "NaN": _HEADER.pack(0, 0, _NAN, 0),
    "Infinity": _HEADER.pack(0, 0, _PINF, 0),
    "-Infinity": _HEADER.pack(0, 0, _NINF, 0),
}
#: PostgreSQL's limits (``NUMERIC_MAX_DISPLAY_SCALE`` and the int16 weight).
_MAX_DSCALE = 0x3FFF
_DIGIT_STRUCTS = [struct.Struct(f"!{n}H") for n in range(64)]

#: Encoded values by their string; cleared when full (a cheap, bounded cache).
CACHE_SIZE = 1 << 16
_cache: dict[str, bytes] = {}


def _digits_struct(n: int) -> struct.Struct:
    return _DIGIT_STRUCTS[n] if n < len(_DIGIT_STRUCTS) else struct.Struct(f"!{n}H")


_POW10 = (1, 10, 100, 1000)


def encode_text(text: str) -> bytes:
    """The binary ``numeric`` of the decimal string ``text`` (as ``str(Decimal)`` writes it)."""
    if not text[-1:].isdigit() or "E" in text or "e" in text or text[:1] == ".":
        return _encode_general(text)
    sign = _POS
    if text[0] == "-":
        sign, text = _NEG, text[1:]
    dot = text.find(".")
    if dot < 0:
        dscale = 0
        n = int(text)
    else:
        dscale = len(text) - dot - 1
        n = int(text[:dot] + text[dot + 1 :])
    if dscale > _MAX_DSCALE:
        raise ValueError("cannot encode Decimal value into numeric: exponent is too small")
    pad = -dscale % 4
    if pad:
        n *= _POW10[pad]
    digits: list[int] = []  # least significant first
    while n:
        n, digit = divmod(n, 10000)
        digits.append(digit)
    if not digits:
        return _HEADER.pack(0, 0, _POS, dscale)
    weight = len(digits) - 1 - (dscale + pad) // 4
    low = 0
    while digits[low] == 0:
        low += 1
    digits = digits[: low - 1 : -1] if low else digits[::-1]
    if weight > 0x7FFF or len(digits) > 0xFFFF:
        raise ValueError("cannot encode Decimal value into numeric: out of range")
    return _HEADER.pack(len(digits), weight, sign, dscale) + _digits_struct(len(digits)).pack(
        *digits
    )


def _encode_general(text: str) -> bytes:
    special = _SPECIAL.get(text)
    if special is not None:
        return special
    sign = _POS
    if text[0] == "-":
        sign, text = _NEG, text[1:]
    elif text[0] == "+":
        text = text[1:]
    if text[:1] in ("N", "n", "s", "S", "I", "i"):
        special = _SPECIAL.get("-Infinity" if sign == _NEG and text[:1] in "Ii" else text)
        if special is None:
            # sNaN, NaN with a payload, other spellings: what PostgreSQL has is NaN / ±Infinity
            special = _SPECIAL["NaN"] if text[:1] in "NnSs" else _SPECIAL["Infinity"]
        return special
    exp = 0
    e = text.find("E")
    if e < 0:
        e = text.find("e")
    if e >= 0:
        exp = int(text[e + 1 :])
        text = text[:e]
    dot = text.find(".")
    if dot >= 0:
        int_part, frac_part = text[:dot], text[dot + 1 :]
    else:
        int_part, frac_part = text, ""
    # value = int(int_part + frac_part) * 10 ** (exp - len(frac_part)): move the point by exp
    if exp > 0:
        shift = min(exp, len(frac_part))
        int_part += frac_part[:shift] + "0" * (exp - shift)
        frac_part = frac_part[shift:]
    elif exp < 0:
        shift = -exp
        if shift > len(int_part):
            int_part = "0" * (shift - len(int_part)) + int_part
        frac_part = int_part[len(int_part) - shift :] + frac_part
        int_part = int_part[: len(int_part) - shift]
    dscale = len(frac_part)
    if dscale > _MAX_DSCALE:
        raise ValueError("cannot encode Decimal value into numeric: exponent is too small")
    int_part = int_part.lstrip("0")
    int_part = "0" * (-len(int_part) % 4) + int_part
    frac_part += "0" * (-len(frac_part) % 4)
    digits = [int(int_part[i : i + 4]) for i in range(0, len(int_part), 4)]
    weight = len(digits) - 1
    digits += [int(frac_part[i : i + 4]) for i in range(0, len(frac_part), 4)]
    start, stop = 0, len(digits)
    while start < stop and digits[start] == 0:
        start += 1
        weight -= 1
    while stop > start and digits[stop - 1] == 0:
        stop -= 1
    if start == stop:
        return _HEADER.pack(0, 0, _POS, dscale)
    if not -0x8000 <= weight <= 0x7FFF or stop - start > 0xFFFF:
        raise ValueError("cannot encode Decimal value into numeric: out of range")
    digits = digits[start:stop]
    return _HEADER.pack(len(digits), weight, sign, dscale) + _digits_struct(len(digits)).pack(
        *digits
    )


def encode(value: object) -> bytes:
    """asyncpg binary encoder for ``numeric``: a ``Decimal`` (or int, or decimal string)."""
    kind = type(value)
    if kind is float:
        raise TypeError("a float is not an exact numeric; pass a Decimal")
    text = value if isinstance(value, str) else str(value)
    data = _cache.get(text)
    if data is None:
        data = encode_text(text)
        if len(_cache) >= CACHE_SIZE:
            _cache.clear()
        _cache[text] = data
    return data


def decode(data: bytes) -> Decimal:
    """asyncpg binary decoder for ``numeric``: the exact ``Decimal``, scale kept."""
    ndigits, weight, sign, dscale = _HEADER.unpack_from(data)
    if sign == _NAN:
        return Decimal("NaN")
    if sign == _PINF:
        return Decimal("Infinity")
    if sign == _NINF:
        return Decimal("-Infinity")
    n = 0
    for digit in _digits_struct(ndigits).unpack_from(data, 8):
        n = n * 10000 + digit
    # n * 10000 ** (weight - ndigits + 1) == coefficient * 10 ** -dscale
    shift = 4 * (weight - ndigits + 1) + dscale
    coefficient = n * 10**shift if shift >= 0 else n // 10**-shift
    text = f"-{coefficient}E-{dscale}" if sign == _NEG else f"{coefficient}E-{dscale}"
    return Decimal(text)
