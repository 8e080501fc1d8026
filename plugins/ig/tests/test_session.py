"""Login flows over the fake IG's REST API, and the streaming session built on them."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tickwire.events import Quote
from tickwire.pipeline import Pipeline
from tickwire.protocols import ConnectionFailed
from tickwire.settings import Settings
from tickwire.testing import MemorySink
from tickwire_ig.connect import IGConnector
from tickwire_ig.rest import AuthError, IGSession
from tickwire_ig.settings import IGSettings
from tickwire_ig.subscribe import IGSubscriber
from tickwire_ig.testing import ACCOUNTS, FakeIG

from .conftest import EPIC, source_for

pytestmark = pytest.mark.anyio


def _settings(fake: FakeIG, **extra: Any) -> IGSettings:
    return IGSettings(**source_for(fake, **extra))


async def test_v2_login_takes_tokens_from_headers_and_endpoint_from_body() -> None:
    async with FakeIG() as fake:
        session = IGSession(_settings(fake))
        login = await session.stream_login()
        assert login.endpoint == fake.ls_url  # from the login answer, not a setting
        assert login.account_id == ACCOUNTS[0]
        cst, xst = login.password.removeprefix("CST-").split("|XST-")
        assert fake._tokens[cst].xst == xst
        assert "CST" not in repr(login) and cst not in repr(login)
        assert fake.logins == [2]


async def test_v3_login_fetches_streaming_tokens_and_refreshes_access() -> None:
    async with FakeIG(oauth_ttl=6) as fake:
        session = IGSession(_settings(fake, session_version=3))
        login = await session.stream_login()
        cst = login.password.removeprefix("CST-").split("|")[0]
        assert cst in fake._tokens and fake.logins == [3]
        # the access token lives 6 s (minus a 5 s margin): the next call refreshes it first
        await anyio.sleep(1.2)
        response = await session.get(
            f"/prices/{EPIC}",
            version=3,
            params={
                "resolution": "MINUTE",
                "from": "2026-01-05T10:00:00",
                "to": "2026-01-05T10:02:00",
            },
        )
        assert response.status_code == 200
        assert fake.logins == [3]  # refreshed, not logged in again


async def test_account_switch() -> None:
    async with FakeIG() as fake:
        session = IGSession(_settings(fake, account_id=ACCOUNTS[1]))
        login = await session.stream_login()
        assert login.account_id == ACCOUNTS[1]


async def test_bad_credentials_give_a_clear_auth_error() -> None:
    async with FakeIG() as fake:
        settings = IGSettings(**{**source_for(fake), "password": "wrong"})
        with pytest.raises(AuthError, match="TICKWIRE_IG_PASSWORD"):
            await IGSession(settings).login()
        connector = IGConnector(settings)
        with pytest.raises(ConnectionFailed) as info:
            async with connector.open([EPIC]):
                pass
        assert info.value.reason == "auth"
        assert "wrong" not in str(info.value)
        assert fake.failed_logins == 2


async def test_expired_tokens_are_refused_then_renewed(tmp_path: Any) -> None:
    """IG's weekend maintenance invalidates every token: the next session is refused (code 1),
    the provider logs in again and streams on."""
    async with FakeIG(tick_interval=0.02) as fake:
        memory = MemorySink()
        settings = Settings(
            sources=[source_for(fake)],
            sinks=[],
            bootstrap={"days": 0},
            runner={"backoff_initial": "50ms", "backoff_max": "200ms", "deadletter": str(tmp_path)},
        )
        pipeline = Pipeline(settings, sinks=[memory])
        async with pipeline:
            await memory.wait_for(lambda m: any(isinstance(e, Quote) for e in m.events), 20)
            fake.expire_tokens()
            await fake.drop_connections()  # the next session needs the (now stale) tokens
            with anyio.fail_after(30):
                while len(fake.logins) < 2:
                    await anyio.sleep(0.05)
            mark = len(memory.events)
            await memory.wait_for(lambda m: len(m.events) > mark + 5, 20)
        assert 1 in fake.rejected_sessions  # CONERR,1 for the stale tokens
        assert fake.logins == [2, 2]


async def test_tokens_refreshed_while_streaming() -> None:
    async with FakeIG(tick_interval=0.02) as fake:
        settings = _settings(fake, token_refresh="300ms")
        connector = IGConnector(settings)
        async with connector.open([EPIC]) as conn:
            first = conn.login.password
            await IGSubscriber(settings).subscribe(conn, [EPIC])
            with anyio.fail_after(10):
                async for _ in conn:
                    if len(fake.logins) >= 2:
                        break
            assert conn.login.password != first
        assert len(fake.logins) >= 2


async def test_protocol_version_refusal_is_explained() -> None:
    async with FakeIG(accept_tlcp=("TLCP-2.5.0",)) as fake:
        connector = IGConnector(_settings(fake))
        with pytest.raises(ConnectionFailed, match=r"TLCP 2\.4") as info:
            async with connector.open([EPIC]):
                pass
        assert info.value.reason == "protocol"
        assert fake.rejected_sessions == [65]
