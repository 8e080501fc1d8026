"""Test support for ``tickwire-ccxtpro``: a fake Binance spot exchange for the real ccxt.pro.

::

    from tickwire_ccxtpro.testing import FakeBinance

    async with FakeBinance(["BTC/USDT"]) as fake:
        source = fake.source(channels=["trades"])   # a [[sources]] table pointing at it
"""

from tickwire_ccxtpro.testing.server import INTERVAL_MS as INTERVAL_MS
from tickwire_ccxtpro.testing.server import FakeBinance as FakeBinance
from tickwire_ccxtpro.testing.server import TapeTrade as TapeTrade
from tickwire_ccxtpro.testing.server import contiguous as contiguous

__all__ = ("INTERVAL_MS", "FakeBinance", "TapeTrade", "contiguous")
