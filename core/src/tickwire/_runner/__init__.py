"""The runner: one module per stage of the data path (connect, subscribe, normalize, sink,
backfill), joined by :mod:`tickwire.pipeline`."""
