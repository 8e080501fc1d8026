"""A writer process for the crash test: its sink takes the first batch and never finishes it.

``python nats_writer_proc.py SOURCE_JSON`` runs a real writer pipeline (``nats`` source,
attached for ack-after-commit) whose only sink prints ``writing <n>`` when the runner hands it a
batch and then hangs: the test kills the process with SIGKILL at that moment, mid-batch, with
every fetched message delivered and none acknowledged.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from tempfile import mkdtemp

import anyio

from tickwire.events import Event
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire_nats import attach

sys.path.insert(0, str(Path(__file__).parent))
from nats_helpers import base_settings


class HangingSink:
    async def open(self) -> None:
        pass

    async def write_batch(self, events: Sequence[Event]) -> None:
        print(f"writing {len(events)}", flush=True)
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        pass


async def main(source: dict[str, object]) -> None:
    settings = Settings(sources=[source], sinks=[], **base_settings(Path(mkdtemp())))
    pipeline = Pipeline(settings, sinks=[HangingSink()])
    attach(pipeline)
    await pipeline.run()


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[1]))
