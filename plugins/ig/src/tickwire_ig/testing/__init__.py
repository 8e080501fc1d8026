"""A protocol-faithful fake IG for tests and ``tickwire demo``: REST plus a TLCP server.

::

    async with FakeIG(epics=["CS.D.EURUSD.CFD.IP"]) as fake:
        source = {"provider": "ig", "symbols": ["CS.D.EURUSD.CFD.IP"], **fake.source_keys()}
"""

from tickwire_ig.testing.server import ACCOUNTS as ACCOUNTS
from tickwire_ig.testing.server import API_KEY as API_KEY
from tickwire_ig.testing.server import PASSWORD as PASSWORD
from tickwire_ig.testing.server import USERNAME as USERNAME
from tickwire_ig.testing.server import Bar as Bar
from tickwire_ig.testing.server import FakeIG as FakeIG
from tickwire_ig.testing.server import Tick as Tick
from tickwire_ig.testing.server import tlcp_value as tlcp_value

__all__ = ("ACCOUNTS", "API_KEY", "PASSWORD", "USERNAME", "Bar", "FakeIG", "Tick", "tlcp_value")
