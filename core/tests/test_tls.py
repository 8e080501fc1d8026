"""The shared TLS client context: built once per CA file, and it trusts what it should."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

from tickwire.tls import client_context


def test_one_context_for_the_system_store() -> None:
    ctx = client_context()
    assert ctx is client_context(None)
    assert ctx.verify_mode is ssl.CERT_REQUIRED
    assert ctx.check_hostname


def test_a_ca_file_gets_its_own_context_that_trusts_only_it(tmp_path: Path) -> None:
    ca = trustme.CA()
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    ctx = client_context(path)
    assert ctx is client_context(str(path))  # by path, str or Path alike
    assert ctx is not client_context()
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_websocket_connections_share_the_context() -> None:
    from tickwire.transport import WebSocketConnector

    assert WebSocketConnector("wss://example.invalid/ws")._tls("wss://example.invalid/ws") is (
        client_context()
    )
    assert WebSocketConnector("ws://127.0.0.1:1/ws")._tls("ws://127.0.0.1:1/ws") is None
