"""Shard assignment for ``tickwire run --shard I/N``: it lives in core (``tickwire.shard``),
which applies it to every source; re-exported here for older imports."""

from tickwire.shard import parse_shard as parse_shard
from tickwire.shard import select as select
from tickwire.shard import shard_of as shard_of

__all__ = ("parse_shard", "select", "shard_of")
