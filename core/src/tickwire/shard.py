"""``tickwire run --shard I/N``: which subscriptions belong to collector ``I`` of ``N``.

Rendezvous (highest-random-weight) hashing: each ``(provider, symbol)`` is scored against every
shard with a keyed BLAKE2b hash and belongs to the shard with the highest score. It is

* **stable**: the same inputs give the same answer in every process, on every machine and in
  every Python version (no ``hash()``, no ``PYTHONHASHSEED``), and no symbol list or order is
  involved: a symbol's shard depends on the symbol and ``N`` only, so adding a symbol to the
  config moves no other;
* **balanced**: the scores are uniform, so each shard gets about ``1/N`` of the symbols;
* **minimal on resize**: going from ``N`` to ``N + 1`` shards moves only the symbols the new
  shard wins (about ``1/(N + 1)`` of them), and each moves to the new shard; shrinking moves only
  the removed shard's symbols.

Shards are numbered from 1 (``--shard 1/3``, ``2/3``, ``3/3``), as pytest-split, jest and
Playwright number theirs. Two collectors started with the same ``I/N`` subscribe the same
symbols: that is a redundant pair, and the bus's message ids keep one copy of each event.

Pure module: no I/O. (The NATS plugin re-exports it as ``tickwire_nats.shard``.)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """Read ``"I/N"`` (1 ≤ I ≤ N) as ``(I, N)``; raise :class:`ValueError` naming the problem."""
    match = _SHARD.match(text)
    if match is None:
        raise ValueError(f"--shard {text!r}: write I/N, e.g. 1/3 (shard I of N, I from 1)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: I must be between 1 and N, and N at least 1")
    return index, count


def _score(key: bytes, shard: int) -> int:
    digest = hashlib.blake2b(key, digest_size=8, salt=shard.to_bytes(8, "little")).digest()
    return int.from_bytes(digest, "big")


def shard_of(provider: str, symbol: str, count: int) -> int:
    """The shard (1…``count``) that owns ``symbol`` of ``provider``."""
    if count < 1:
        raise ValueError("count must be at least 1")
    if count == 1:
        return 1
    key = provider.encode() + b"\x00" + symbol.encode()
    best, owner = -1, 1
    for shard in range(1, count + 1):
        score = _score(key, shard)
        if score > best:
            best, owner = score, shard
    return owner


def select(provider: str, symbols: Iterable[str], index: int, count: int) -> list[str]:
    """The symbols of ``provider`` that shard ``index`` of ``count`` subscribes, in their order.

    A source whose symbols all belong to other shards gets an empty list: the caller drops that
    source from this collector.
    """
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count}: I must be between 1 and N")
    return [s for s in symbols if shard_of(provider, s, count) == index]


__all__ = ("parse_shard", "select", "shard_of")
