"""The opt-in HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` on ``[metrics] listen``.

A small HTTP/1.1 server on anyio, in the pipeline's own event loop (not
``prometheus_client.start_http_server``, which serves from a thread): the collector then reads
the pipeline's dicts on the thread that writes them, so a scrape can never see a dict change
size mid-iteration, and the server stops with the task group it runs in, with nothing left
behind. It answers ``GET`` and ``HEAD``, one request per connection (``Connection: close``),
with a 5 s limit to send the request head and 16 KiB for it.

::

    async with pipeline, serve_metrics(pipeline, "127.0.0.1:9464") as url:
        ...   # url == "http://127.0.0.1:9464"
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from tickwire._log import emit
from tickwire.observe.health import HealthPolicy, Readiness, check_health
from tickwire.observe.prometheus import exposition, registry_for
from tickwire.settings import ConfigError

if TYPE_CHECKING:
    from tickwire.pipeline import Pipeline

INFO, WARNING = 20, 30
DEFAULT_HOST = "127.0.0.1"
#: Longest wait for a request's head, and its largest size.
REQUEST_TIMEOUT = 5.0
MAX_HEAD = 16 * 1024
#: Seconds between readiness samples (so a short first connection is still seen).
SAMPLE_EVERY = 0.2

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` → ``(host, port)``; ``[::1]:9464`` for IPv6, ``:9464`` or ``9464`` for
    127.0.0.1. Raises :class:`~tickwire.settings.ConfigError` naming ``metrics.listen``."""
    text = listen.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535 or (":" in host and not text.startswith("[")):
        raise ConfigError(
            f"metrics.listen: {listen!r} is not host:port (e.g. 127.0.0.1:9464, [::1]:9464)"
        )
    return host or DEFAULT_HOST, port


class MetricsServer:
    """Serves one pipeline's metrics, health and readiness.

    :param policy: how long a connection may be down and still be healthy
        (see :mod:`tickwire.observe.health`).
    """

    def __init__(self, pipeline: Pipeline, *, policy: HealthPolicy | None = None) -> None:
        self.pipeline = pipeline
        self.policy = policy or HealthPolicy()
        self.readiness = Readiness(pipeline)
        self.registry = registry_for(pipeline, readiness=self.readiness, policy=self.policy)

    # ---- answers -------------------------------------------------------------------------

    def respond(self, path: str, accept: str = "") -> tuple[int, str, bytes]:
        """The status, content type and body for ``GET path``."""
        if path == "/metrics":
            body, content_type = exposition(self.registry, accept)
            return 200, content_type, body
        if path == "/healthz":
            health = check_health(self.pipeline, policy=self.policy)
            return (200 if health.ok else 503), *_json(health.body())
        if path == "/readyz":
            waiting = self.readiness.waiting_for()
            ready = not waiting["connections"] and not waiting["sinks"]
            answer = {"status": "ready" if ready else "waiting", "waiting_for": waiting}
            return (200 if ready else 503), *_json(answer)
        if path == "/":
            text = "tickwire: /metrics /healthz /readyz\n"
            return 200, "text/plain; charset=utf-8", text.encode()
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n"

    async def handle(self, stream: SocketStream) -> None:
        """Answer one request on ``stream`` and close it."""
        async with stream:
            try:
                with anyio.fail_after(REQUEST_TIMEOUT):
                    head = await _read_head(stream)
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            if head is None:
                await _send(stream, 400, "text/plain", b"bad request\n")
                return
            method, path, headers = head
            if method not in ("GET", "HEAD"):
                await _send(stream, 405, "text/plain", b"GET only\n", extra={"Allow": "GET, HEAD"})
                return
            self.readiness.update()
            status, content_type, body = self.respond(path, headers.get("accept", ""))
            await _send(stream, status, content_type, body, head_only=method == "HEAD")

    # ---- running -------------------------------------------------------------------------

    async def serve(
        self,
        listen: str,
        *,
        task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``listen`` (``host:port``) until cancelled; ``task_status`` gets the URL."""
        host, port = parse_listen(listen)
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener, anyio.create_task_group() as tg:
            sockname: Any = listener.listeners[0].extra(SocketAttribute.local_address)
            bound_host, bound_port = sockname[0], sockname[1]
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            url = f"http://{shown}:{bound_port}"
            tg.start_soon(self._sample)
            emit(INFO, "metrics.listening", url=url)
            task_status.started(url)
            await listener.serve(self._guarded, task_group=tg)

    async def _guarded(self, stream: SocketStream) -> None:
        try:
            await self.handle(stream)
        except Exception as exc:  # one bad scrape must never stop the endpoint
            emit(WARNING, "metrics.error", f"{type(exc).__name__}: {exc}")

    async def _sample(self) -> None:
        while True:
            self.readiness.update()
            await anyio.sleep(SAMPLE_EVERY)


@asynccontextmanager
async def serve_metrics(
    pipeline: Pipeline, listen: str, *, policy: HealthPolicy | None = None
) -> AsyncIterator[str]:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` for ``pipeline`` while the block runs.

    Yields the base URL (with the real port when ``listen`` asked for port 0).
    """
    server = MetricsServer(pipeline, policy=policy)
    async with anyio.create_task_group() as tg:
        url: str = await tg.start(server.serve, listen)
        try:
            yield url
        finally:
            tg.cancel_scope.cancel()


def _json(body: dict[str, Any]) -> tuple[str, bytes]:
    return "application/json", (json.dumps(body, default=str) + "\n").encode()


async def _read_head(stream: SocketStream) -> tuple[str, str, dict[str, str]] | None:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        data += await stream.receive(4096)
    lines = data.split(b"\n")
    try:
        method, target, _version = lines[0].decode("latin-1").strip().split(" ", 2)
    except ValueError:
        return None
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        line = raw.decode("latin-1").strip()
        if not line:
            break
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method.upper(), target.split("?", 1)[0], headers


async def _send(
    stream: SocketStream,
    status: int,
    content_type: str,
    body: bytes,
    *,
    head_only: bool = False,
    extra: dict[str, str] | None = None,
) -> None:
    reason = _REASONS.get(status, "Service Unavailable" if status == 503 else "")
    head = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await stream.send(payload if head_only else payload + body)


__all__ = ("MetricsServer", "parse_listen", "serve_metrics")
