"""Rendezvous sharding: stable, balanced, and moving few symbols when N changes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwire_nats.shard import parse_shard, select, shard_of

SYMBOLS = [f"SYM{i}-USD" for i in range(20_000)]


def test_parse_shard() -> None:
    assert parse_shard("1/3") == (1, 3)
    assert parse_shard(" 3 / 3 ") == (3, 3)
    for bad in ("0/3", "4/3", "1/0", "x/3", "1", "1/3/4", "-1/3"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_the_same_in_another_process_with_another_hash_seed() -> None:
    sample = SYMBOLS[:200]
    here = [shard_of("coinbase", s, 7) for s in sample]
    code = (
        "import json, sys; from tickwire_nats.shard import shard_of; "
        "print(json.dumps([shard_of('coinbase', s, 7) for s in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sample)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(out.stdout) == here


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_balanced(n: int) -> None:
    counts = Counter(shard_of("coinbase", s, n) for s in SYMBOLS)
    assert set(counts) == set(range(1, n + 1))
    fair = len(SYMBOLS) / n
    # Within 4 standard deviations of a fair binomial split (uniform scores).
    sigma = math.sqrt(len(SYMBOLS) * (1 / n) * (1 - 1 / n))
    assert all(abs(c - fair) < 4 * sigma for c in counts.values()), counts


@pytest.mark.parametrize("n", [1, 2, 3, 5, 9])
def test_growing_moves_only_what_the_new_shard_wins(n: int) -> None:
    before = {s: shard_of("coinbase", s, n) for s in SYMBOLS}
    after = {s: shard_of("coinbase", s, n + 1) for s in SYMBOLS}
    moved = [s for s in SYMBOLS if before[s] != after[s]]
    assert all(after[s] == n + 1 for s in moved)
    share = len(moved) / len(SYMBOLS)
    assert abs(share - 1 / (n + 1)) < 0.02, share


def test_shrinking_moves_only_the_removed_shards_symbols() -> None:
    before = {s: shard_of("coinbase", s, 5) for s in SYMBOLS}
    after = {s: shard_of("coinbase", s, 4) for s in SYMBOLS}
    assert all(before[s] == 5 for s in SYMBOLS if before[s] != after[s])


@given(st.lists(st.text(min_size=1), unique=True, max_size=50), st.integers(1, 12))
def test_select_partitions_the_symbols(symbols: list[str], n: int) -> None:
    parts = [select("p", symbols, i, n) for i in range(1, n + 1)]
    assert sorted(s for part in parts for s in part) == sorted(symbols)
    for part in parts:
        assert part == [s for s in symbols if s in part]  # config order kept


def test_provider_is_part_of_the_key() -> None:
    a = [shard_of("coinbase", s, 4) for s in SYMBOLS[:1000]]
    b = [shard_of("kraken", s, 4) for s in SYMBOLS[:1000]]
    assert a != b


def test_select_rejects_a_bad_shard() -> None:
    with pytest.raises(ValueError, match="between 1 and N"):
        select("p", ["A"], 0, 2)
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("p", "A", 0)
