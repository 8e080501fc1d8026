"""A fake IG on 127.0.0.1: the REST endpoints and a Lightstreamer server speaking TLCP.

Two aiohttp sites in the caller's event loop:

* **REST** at ``rest_url`` (``…/gateway/deal``): ``POST /session`` (v2: CST and
  X-SECURITY-TOKEN headers; v3: OAuth body), ``GET /session`` (``fetchSessionTokens=true``
  for v3), ``PUT /session`` (switch account), ``POST /session/refresh-token``, and
  ``GET /prices/{epic}`` (v3, paged, with ``metadata.allowance`` and the historical data
  allowance error once it is spent). The login answer names the Lightstreamer site as
  ``lightstreamerEndpoint``.
* **Lightstreamer** at ``ls_url``: the TLCP subset the real ``lightstreamer-client-lib`` uses
  with forced WS-STREAMING: ``wsok``/``WSOK``, ``create_session`` and ``bind_session`` over a
  websocket (subprotocol ``TLCP-2.4.0.lightstreamer.com``), ``control`` requests (``add``,
  ``delete``, ``destroy``), and session recovery over HTTP ``POST bind_session.txt``
  (``LS_recovery_from``: ``CONOK``, ``PROG``, the missed notifications, ``LOOP``). Server
  lines: ``CONOK``, ``SERVNAME``, ``CLIENTIP``, ``CONS``, ``SUBOK``, ``U`` (TLCP value encoding:
  empty = unchanged, ``^N`` = N unchanged, ``#`` = null, ``$`` = empty, percent-encoding),
  ``EOS``, ``UNSUB``, ``REQERR``, ``CONERR``, ``PROBE``, ``LOOP``, ``END``.

IG's rules are enforced: typed item names (``PRICE:<account>:<epic>`` with data adapter
``Pricing``, ``CHART:<epic>:TICK`` DISTINCT, ``CHART:<epic>:<scale>`` MERGE), the retired
``MARKET:`` items refused, field names checked, password ``CST-…|XST-…`` of a live REST login
with user = its account. A simulated market ticks every ``tick_interval`` seconds; every update
sent is recorded (``price_updates``, ``tick_updates``, ``candles``) for the tests to compare with.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

API_KEY = "fake-api-key"
USERNAME = "fake-user"
PASSWORD = "fake-password"
ACCOUNTS = ("ABC123", "XYZ789")
#: TLCP versions the fake accepts (IG's servers: 2.4.0 only; 2.x SDKs get CONERR 65).
TLCP_ACCEPTED = ("TLCP-2.4.0",)
CHART_SCALE_MS = {"SECOND": 1000, "1MINUTE": 60_000, "5MINUTE": 300_000, "HOUR": 3_600_000}
RESOLUTION_MS = {
    "SECOND": 1000,
    "MINUTE": 60_000,
    "MINUTE_2": 120_000,
    "MINUTE_3": 180_000,
    "MINUTE_5": 300_000,
    "MINUTE_10": 600_000,
    "MINUTE_15": 900_000,
    "MINUTE_30": 1_800_000,
    "HOUR": 3_600_000,
    "HOUR_2": 7_200_000,
    "HOUR_3": 10_800_000,
    "HOUR_4": 14_400_000,
    "DAY": 86_400_000,
}
PRICE_FIELDS = frozenset(
    {"MID_OPEN", "HIGH", "LOW", "BIDQUOTEID", "ASKQUOTEID", "TIMESTAMP", "NET_CHG", "NET_CHG_"}
    | {"DLG_FLAG", "CURRENCY0"}
    | {f"{side}{kind}{n}" for side in ("BID", "ASK") for kind in ("PRICE", "SIZE") for n in "12345"}
)
TICK_FIELDS = frozenset(
    {"BID", "OFR", "LTP", "LTV", "TTV", "UTM", "DAY_OPEN_MID", "DAY_NET_CHG_MID"}
    | {"DAY_PERC_CHG_MID", "DAY_HIGH", "DAY_LOW"}
)
CANDLE_FIELDS = frozenset(
    {
        f"{side}_{part}"
        for side in ("BID", "OFR", "LTP")
        for part in ("OPEN", "HIGH", "LOW", "CLOSE")
    }
    | {"LTV", "TTV", "UTM", "DAY_OPEN_MID", "DAY_NET_CHG_MID", "DAY_PERC_CHG_MID", "DAY_HIGH"}
    | {"DAY_LOW", "CONS_END", "CONS_TICK_COUNT"}
)
_TLCP_TAGS = (
    "U,", "PROBE", "LOOP", "END", "CONERR", "CONOK", "SUBOK", "REQERR", "REQOK", "EOS",
    "UNSUB", "PROG", "SYNC", "NOOP", "CONS", "SERVNAME", "CLIENTIP", "ERROR",
)  # fmt: skip
_TICK = Decimal("0.00001")


def tlcp_value(value: str | None) -> str:
    """One field value in TLCP's ``U`` encoding (``#`` null, ``$`` empty, percent-quoting)."""
    if value is None:
        return "#"
    if value == "":
        return "$"
    out = []
    for i, ch in enumerate(value):
        if ch in "%|\r\n" or ord(ch) < 32 or (i == 0 and ch in "#$^"):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def encode_update(values: list[str | None], previous: list[str | None] | None) -> str:
    """The ``U`` value list: unchanged fields empty, runs of them as ``^N``."""
    if previous is None:
        return "|".join(tlcp_value(v) for v in values)
    parts: list[str] = []
    run = 0
    for value, prev in zip(values, previous, strict=True):
        if value == prev:
            run += 1
            continue
        if run:
            parts.extend([""] if run == 1 else [f"^{run}"])
            run = 0
        parts.append(tlcp_value(value))
    if run:
        parts.extend([""] if run == 1 else [f"^{run}"])
    return "|".join(parts)


def _fmt(value: Decimal) -> str:
    return f"{value:.5f}"


@dataclass
class Tick:
    """One simulated market tick (prices as IG text)."""

    ts_ms: int
    bid: str
    offer: str
    last: str | None = None
    volume: str | None = None


@dataclass
class Bar:
    """The forming (or closed) candle of one epic and scale."""

    start_ms: int
    bid: list[Decimal]
    ofr: list[Decimal]
    ts_ms: int
    count: int = 1
    closed: bool = False

    def add(self, tick: Tick) -> None:
        bid, ofr = Decimal(tick.bid), Decimal(tick.offer)
        self.bid = [self.bid[0], max(self.bid[1], bid), min(self.bid[2], bid), bid]
        self.ofr = [self.ofr[0], max(self.ofr[1], ofr), min(self.ofr[2], ofr), ofr]
        self.ts_ms = tick.ts_ms
        self.count += 1

    def fields(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for i, part in enumerate(("OPEN", "HIGH", "LOW", "CLOSE")):
            out[f"BID_{part}"] = _fmt(self.bid[i])
            out[f"OFR_{part}"] = _fmt(self.ofr[i])
        out.update(
            LTV=None,
            UTM=str(self.ts_ms),
            CONS_END="1" if self.closed else "0",
            CONS_TICK_COUNT=str(self.count),
        )
        return out


@dataclass
class _Sub:
    sub_id: int
    mode: str
    items: list[str]
    fields: list[str]
    epics: list[str]
    scale: str  # "PRICE", "TICK" or a CHART scale
    last: dict[int, list[str | None]] = field(default_factory=dict)


@dataclass
class _LSSession:
    id: str
    account_id: str
    keepalive_ms: int
    subs: dict[int, _Sub] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    sent: int = 0
    ws: web.WebSocketResponse | None = None
    transport: asyncio.Transport | None = None
    last_write: float = 0.0
    unbound_since: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Token:
    account_id: str
    xst: str
    valid: bool = True


class FakeIG:
    """The fake IG. ``async with FakeIG(epics=[...]) as fake:`` serves until the block ends.

    :param epics: the epics the market knows (``any_epic``: any well-formed epic).
    :param tick_interval: seconds between market ticks.
    :param time_step_ms: advance the market clock this much per tick (None: wall-clock time);
        lets a test see 1-minute candles close in about a second.
    :param traded: epics whose ticks carry a last-traded price and volume (exchange-traded).
    :param allowance: historical data points a week for ``/prices``.
    :param accept_tlcp: TLCP versions accepted (others get ``CONERR,65``).
    """

    def __init__(
        self,
        epics: list[str] | tuple[str, ...] = ("CS.D.EURUSD.CFD.IP",),
        *,
        any_epic: bool = False,
        tick_interval: float = 0.05,
        time_step_ms: int | None = None,
        traded: tuple[str, ...] = (),
        allowance: int = 10_000,
        accept_tlcp: tuple[str, ...] = TLCP_ACCEPTED,
        oauth_ttl: int = 60,
        session_linger: float = 30.0,
    ) -> None:
        self.epics = list(epics)
        self.any_epic = any_epic
        self.tick_interval = tick_interval
        self.time_step_ms = time_step_ms
        self.traded = set(traded)
        self.total_allowance = allowance
        self.remaining_allowance = allowance
        self.accept_tlcp = accept_tlcp
        self.oauth_ttl = oauth_ttl
        self.session_linger = session_linger
        self.refuse_recovery = False
        self.paused = False
        # what happened, for the tests
        self.logins: list[int] = []  # session versions of the successful logins
        self.failed_logins = 0
        self.price_requests: list[dict[str, str]] = []
        self.price_updates: dict[str, list[Tick]] = defaultdict(list)
        self.tick_updates: dict[str, list[Tick]] = defaultdict(list)
        self.candles: dict[tuple[str, str], dict[int, Bar]] = defaultdict(dict)
        self.created_sessions = 0
        self.recoveries = 0
        self.rejected_sessions: list[int] = []  # CONERR codes sent
        self.subscribe_errors: list[tuple[int, str]] = []
        # state
        self._tokens: dict[str, _Token] = {}
        self._oauth: dict[str, tuple[str, float]] = {}  # access token -> (account, expiry)
        self._refresh: dict[str, str] = {}  # refresh token -> account
        self._sessions: dict[str, _LSSession] = {}
        self._sockets: set[tuple[web.WebSocketResponse, asyncio.Transport]] = set()
        self._bars: dict[tuple[str, str], Bar] = {}
        self._last: dict[str, Tick] = {}
        self._n: dict[str, int] = defaultdict(int)
        self._clock_ms = (time.time_ns() // 1_000_000) // 60_000 * 60_000
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.rest_url = ""
        self.ls_url = ""

    # ---- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> FakeIG:
        app = web.Application()
        app.router.add_post("/gateway/deal/session", self._post_session)
        app.router.add_get("/gateway/deal/session", self._get_session)
        app.router.add_put("/gateway/deal/session", self._put_session)
        app.router.add_post("/gateway/deal/session/refresh-token", self._refresh_token)
        app.router.add_get("/gateway/deal/prices/{epic}", self._prices)
        app.router.add_get("/lightstreamer", self._ws)
        app.router.add_post("/lightstreamer/bind_session.txt", self._http_bind)
        app.router.add_post("/lightstreamer/create_session.txt", self._http_create)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        rest = web.TCPSite(self._runner, "127.0.0.1", 0)
        ls = web.TCPSite(self._runner, "127.0.0.1", 0)
        await rest.start()
        await ls.start()
        self.rest_url = f"http://127.0.0.1:{_port(rest)}/gateway/deal"
        self.ls_url = f"http://127.0.0.1:{_port(ls)}"
        self._tasks = [
            asyncio.create_task(self._market()),
            asyncio.create_task(self._keepalive()),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, transport in list(self._sockets):
            transport.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    def source_keys(self) -> dict[str, Any]:
        """The ``[[sources]]`` keys that point an IG source at this fake."""
        return {
            "rest_url": self.rest_url,
            "api_key": API_KEY,
            "username": USERNAME,
            "password": PASSWORD,
        }

    # ---- fault injection -----------------------------------------------------------------

    async def drop_connections(self, *, recoverable: bool = False) -> None:
        """Abort every client socket. Unless ``recoverable``, forget the sessions too (as a
        restarted server would): the client must create a new session and resubscribe."""
        for _, transport in list(self._sockets):
            transport.abort()
        self._sockets.clear()
        if not recoverable:
            self._sessions.clear()

    async def send_raw(self, frame: str) -> None:
        """Send ``frame`` to every client: as a TLCP line if it is one, otherwise as the first
        field's value of one update per subscribed item (a value no parser can read)."""
        for session in list(self._sessions.values()):
            if frame.startswith(_TLCP_TAGS):
                await self._write(session, [frame], data=frame.startswith("U,"))
                continue
            lines = []
            for sub in session.subs.values():
                for idx in range(1, len(sub.items) + 1):
                    values: list[str | None] = [frame] + [None] * (len(sub.fields) - 1)
                    lines.append(f"U,{sub.sub_id},{idx},{encode_update(values, None)}")
                    sub.last.pop(idx, None)  # the next update carries every field again
            if lines:
                await self._write(session, lines, data=True)

    async def loop_sessions(self) -> None:
        """Send ``LOOP,0`` to every bound session: the client rebinds on a new socket."""
        for session in list(self._sessions.values()):
            if session.ws is not None:
                await self._write(session, ["LOOP,0"], data=False)

    def expire_tokens(self) -> None:
        """Invalidate every REST token, as IG's weekend maintenance does (open streams go on)."""
        for token in self._tokens.values():
            token.valid = False
        self._oauth.clear()
        self._refresh.clear()

    # ---- REST ----------------------------------------------------------------------------

    @staticmethod
    def _error(status: int, code: str) -> web.Response:
        return web.json_response({"errorCode": code}, status=status)

    def _check_key(self, request: web.Request) -> web.Response | None:
        if request.headers.get("X-IG-API-KEY") != API_KEY:
            return self._error(403, "error.security.api-key-invalid")
        if "application/json" not in request.headers.get("Accept", ""):
            return self._error(400, "error.request.accept-header")
        return None

    def _account_of(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization")
        if auth:
            kind, _, bearer = auth.partition(" ")
            entry = self._oauth.get(bearer)
            if kind == "Bearer" and entry is not None and entry[1] > time.monotonic():
                return request.headers.get("IG-ACCOUNT-ID") or entry[0]
            return None
        cst = request.headers.get("CST", "")
        found = self._tokens.get(cst)
        if found is None or not found.valid:
            return None
        if found.xst != request.headers.get("X-SECURITY-TOKEN"):
            return None
        return found.account_id

    def _new_tokens(self, account: str) -> tuple[str, str]:
        cst, xst = secrets.token_hex(16), secrets.token_hex(16)
        self._tokens[cst] = _Token(account, xst)
        return cst, xst

    async def _post_session(self, request: web.Request) -> web.Response:
        bad = self._check_key(request)
        if bad is not None:
            return bad
        body = await request.json()
        if body.get("identifier") != USERNAME or body.get("password") != PASSWORD:
            self.failed_logins += 1
            return self._error(401, "error.security.invalid-details")
        version = request.headers.get("Version", "1")
        account = ACCOUNTS[0]
        if version == "3":
            access, refresh = secrets.token_hex(16), secrets.token_hex(16)
            self._oauth[access] = (account, time.monotonic() + self.oauth_ttl)
            self._refresh[refresh] = account
            self.logins.append(3)
            return web.json_response(
                {
                    "clientId": "100",
                    "accountId": account,
                    "timezoneOffset": 0,
                    "lightstreamerEndpoint": self.ls_url,
                    "oauthToken": {
                        "access_token": access,
                        "refresh_token": refresh,
                        "scope": "profile",
                        "token_type": "Bearer",
                        "expires_in": str(self.oauth_ttl),
                    },
                }
            )
        cst, xst = self._new_tokens(account)
        self.logins.append(2)
        return web.json_response(
            {
                "accountType": "CFD",
                "accountInfo": {"balance": 1000, "deposit": 0, "profitLoss": 0, "available": 1000},
                "currencyIsoCode": "GBP",
                "currencySymbol": "£",
                "currentAccountId": account,
                "lightstreamerEndpoint": self.ls_url,
                "accounts": [
                    {
                        "accountId": a,
                        "accountName": a,
                        "preferred": a == account,
                        "accountType": "CFD",
                    }
                    for a in ACCOUNTS
                ],
                "clientId": "100",
                "timezoneOffset": 0,
                "hasActiveDemoAccounts": True,
                "hasActiveLiveAccounts": False,
                "trailingStopsEnabled": False,
                "dealingEnabled": True,
            },
            headers={"CST": cst, "X-SECURITY-TOKEN": xst},
        )

    async def _get_session(self, request: web.Request) -> web.Response:
        bad = self._check_key(request)
        if bad is not None:
            return bad
        account = self._account_of(request)
        if account is None:
            return self._error(401, "error.security.client-token-invalid")
        headers = {}
        if request.query.get("fetchSessionTokens") == "true":
            cst, xst = self._new_tokens(account)
            headers = {"CST": cst, "X-SECURITY-TOKEN": xst}
        return web.json_response(
            {
                "clientId": "100",
                "accountId": account,
                "timezoneOffset": 0,
                "locale": "en_GB",
                "currency": "GBP",
                "lightstreamerEndpoint": self.ls_url,
            },
            headers=headers,
        )

    async def _put_session(self, request: web.Request) -> web.Response:
        bad = self._check_key(request)
        if bad is not None:
            return bad
        account = self._account_of(request)
        if account is None:
            return self._error(401, "error.security.client-token-invalid")
        wanted = (await request.json()).get("accountId")
        if wanted not in ACCOUNTS:
            return self._error(403, "error.switch.accountId-must-be-valid")
        cst = request.headers.get("CST", "")
        if cst in self._tokens:
            self._tokens[cst].account_id = wanted
        return web.json_response({"trailingStopsEnabled": False, "dealingEnabled": True})

    async def _refresh_token(self, request: web.Request) -> web.Response:
        bad = self._check_key(request)
        if bad is not None:
            return bad
        token = (await request.json()).get("refresh_token", "")
        account = self._refresh.pop(token, None)
        if account is None:
            return self._error(401, "error.security.oauth-token-invalid")
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self._oauth[access] = (account, time.monotonic() + self.oauth_ttl)
        self._refresh[refresh] = account
        return web.json_response(
            {
                "access_token": access,
                "refresh_token": refresh,
                "scope": "profile",
                "token_type": "Bearer",
                "expires_in": str(self.oauth_ttl),
            }
        )

    @staticmethod
    def history_bar(epic: str, resolution_ms: int, start_ms: int) -> dict[str, Any]:
        """The deterministic ``prices[]`` row the fake serves for one bucket."""
        seed = zlib.crc32(f"{epic}:{resolution_ms}:{start_ms}".encode())
        base = _base(epic) + (seed % 400 - 200) * _TICK
        o, c = base, base + (seed % 13 - 6) * _TICK
        h, low = max(o, c) + (seed % 7) * _TICK, min(o, c) - (seed % 5) * _TICK
        spread = Decimal("0.00006")

        def pair(value: Decimal) -> dict[str, Any]:
            return {
                "bid": float(_fmt(value)),
                "ask": float(_fmt(value + spread)),
                "lastTraded": None,
            }

        moment = datetime.fromtimestamp(start_ms / 1000, UTC)
        return {
            "snapshotTime": moment.strftime("%Y/%m/%d %H:%M:%S"),
            "snapshotTimeUTC": moment.strftime("%Y-%m-%dT%H:%M:%S"),
            "openPrice": pair(o),
            "closePrice": pair(c),
            "highPrice": pair(h),
            "lowPrice": pair(low),
            "lastTradedVolume": 0,
        }

    async def _prices(self, request: web.Request) -> web.Response:
        bad = self._check_key(request)
        if bad is not None:
            return bad
        if self._account_of(request) is None:
            return self._error(401, "error.security.client-token-invalid")
        if request.headers.get("Version") != "3":
            return self._error(400, "error.request.version")
        epic = request.match_info["epic"]
        if not self._known(epic):
            return self._error(404, "error.service.marketdata.instrument.epic.unavailable")
        query = dict(request.query)
        self.price_requests.append(query)
        if self.remaining_allowance <= 0:
            return self._error(403, "error.public-api.exceeded-account-historical-data-allowance")
        step = RESOLUTION_MS.get(query.get("resolution", "MINUTE"))
        if step is None:
            return self._error(400, "error.request.resolution")
        try:
            start = _parse_ig_time(query["from"])
            end = _parse_ig_time(query["to"])
        except (KeyError, ValueError):
            return self._error(400, "error.request.date-range")
        now_ms = self._now_ms()
        first = -(-start // step) * step
        starts = [t for t in range(first, end + 1, step) if t + step <= now_ms]
        size = int(query.get("pageSize", "20"))
        number = int(query.get("pageNumber", "1"))
        pages = max(1, -(-len(starts) // size)) if size else 1
        chunk = starts[(number - 1) * size : number * size] if size else starts
        chunk = chunk[: self.remaining_allowance]
        self.remaining_allowance -= len(chunk)
        return web.json_response(
            {
                "prices": [self.history_bar(epic, step, t) for t in chunk],
                "instrumentType": "CURRENCIES",
                "metadata": {
                    "allowance": {
                        "remainingAllowance": self.remaining_allowance,
                        "totalAllowance": self.total_allowance,
                        "allowanceExpiry": 518_400,
                    },
                    "size": len(chunk),
                    "pageData": {"pageSize": size, "pageNumber": number, "totalPages": pages},
                },
            }
        )

    # ---- Lightstreamer ---------------------------------------------------------------------

    async def _http_create(self, request: web.Request) -> web.Response:
        # Only WS-STREAMING sessions are served; a client sensing HTTP is told to go away.
        return web.Response(text="CONERR,60,HTTP sessions are not served here\r\n")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            protocols=tuple(f"{v}.lightstreamer.com" for v in ("TLCP-2.4.0", "TLCP-2.5.0")),
            autoping=True,
        )
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        entry = (ws, transport)
        self._sockets.add(entry)
        version = (ws.ws_protocol or "").removesuffix(".lightstreamer.com")
        session: _LSSession | None = None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                lines = msg.data.split("\r\n")
                name = lines[0]
                params = [
                    dict(parse_qsl(line, keep_blank_values=True)) for line in lines[1:] if line
                ]
                if name == "wsok":
                    await ws.send_str("WSOK\r\n")
                elif name == "create_session":
                    session = await self._create(ws, transport, version, params[0])
                elif name == "bind_session":
                    session = await self._bind(ws, transport, params[0])
                elif name == "control" and session is not None:
                    for p in params:
                        await self._control(session, p)
        finally:
            self._sockets.discard(entry)
            if session is not None and session.ws is ws:
                session.ws = None
                session.transport = None
                session.unbound_since = time.monotonic()
        return ws

    async def _conerr(self, ws: web.WebSocketResponse, code: int, text: str) -> None:
        self.rejected_sessions.append(code)
        await ws.send_str(f"CONERR,{code},{text}\r\n")
        await ws.close()

    async def _create(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        version: str,
        p: dict[str, str],
    ) -> _LSSession | None:
        if version not in self.accept_tlcp:
            await self._conerr(ws, 65, f"Unsupported protocol version: {version[5:]}")
            return None
        account = self._stream_account(p.get("LS_password", ""))
        if account is None or account != p.get("LS_user"):
            await self._conerr(ws, 1, "User/password check failed")
            return None
        session = _LSSession(
            id=f"S{secrets.token_hex(8)}",
            account_id=account,
            keepalive_ms=int(p.get("LS_keepalive_millis") or 5000),
        )
        self._sessions[session.id] = session
        self.created_sessions += 1
        await self._attach(session, ws, transport)
        return session

    async def _bind(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport, p: dict[str, str]
    ) -> _LSSession | None:
        session = self._sessions.get(p.get("LS_session", ""))
        if session is None:
            await self._conerr(ws, 20, "Session not found")
            return None
        if p.get("LS_keepalive_millis"):
            session.keepalive_ms = int(p["LS_keepalive_millis"])
        await self._attach(session, ws, transport)
        return session

    async def _attach(
        self, session: _LSSession, ws: web.WebSocketResponse, transport: asyncio.Transport
    ) -> None:
        async with session.lock:
            old = session.transport
            session.ws, session.transport, session.unbound_since = ws, transport, None
            if old is not None and old is not transport:
                old.abort()
            head = [
                f"CONOK,{session.id},50000,{session.keepalive_ms},*",
                "SERVNAME,Fake IG Lightstreamer",
                "CLIENTIP,127.0.0.1",
                "CONS,unlimited",
            ]
            await ws.send_str("\r\n".join(head + session.notes[session.sent :]) + "\r\n")
            session.sent = len(session.notes)
            session.last_write = time.monotonic()

    def _stream_account(self, password: str) -> str | None:
        cst_part, _, xst_part = password.partition("|")
        if not cst_part.startswith("CST-") or not xst_part.startswith("XST-"):
            return None
        token = self._tokens.get(cst_part[4:])
        if token is None or not token.valid or token.xst != xst_part[4:]:
            return None
        return token.account_id

    async def _http_bind(self, request: web.Request) -> web.Response:
        p = dict(parse_qsl(await request.text(), keep_blank_values=True))
        session = self._sessions.get(p.get("LS_session", ""))
        if session is None:
            return web.Response(text="CONERR,20,Session not found\r\n")
        if "LS_recovery_from" not in p:
            return web.Response(text="CONERR,60,Only recovery is served over HTTP\r\n")
        start = int(p["LS_recovery_from"])
        if self.refuse_recovery or start > len(session.notes):
            self._sessions.pop(session.id, None)
            return web.Response(text="CONERR,4,Recovery not possible\r\n")
        async with session.lock:
            if session.transport is not None:
                session.transport.abort()
                session.ws = session.transport = None
            lines = [
                f"CONOK,{session.id},50000,{session.keepalive_ms},*",
                f"PROG,{start}",
                *session.notes[start:],
                "LOOP,0",
            ]
            session.sent = len(session.notes)
            session.unbound_since = time.monotonic()
        self.recoveries += 1
        return web.Response(text="\r\n".join(lines) + "\r\n", content_type="text/plain")

    async def _control(self, session: _LSSession, p: dict[str, str]) -> None:
        op = p.get("LS_op")
        req_id = p.get("LS_reqId", "0")
        ack = p.get("LS_ack", "true") != "false"
        if op == "add":
            sub_id = int(p["LS_subId"])
            problem = self._check_subscription(session, p)
            if problem is not None:
                code, text = problem
                self.subscribe_errors.append(problem)
                await self._write(session, [f"REQERR,{req_id},{code},{text}"], data=False)
                return
            items = p["LS_group"].split(" ")
            fields = p["LS_schema"].split(" ")
            scale = items[0].rpartition(":")[2] if items[0].startswith("CHART:") else "PRICE"
            epics = [_epic_of(item) for item in items]
            sub = _Sub(sub_id, p["LS_mode"], items, fields, epics, scale)
            lines = [f"REQOK,{req_id}"] if ack else []
            await self._write(session, lines, data=False)
            session.subs[sub_id] = sub
            head = [f"SUBOK,{sub_id},{len(items)},{len(fields)}"]
            snapshot = p.get("LS_snapshot", "false") != "false"
            if snapshot and sub.mode == "MERGE":
                for idx, epic in enumerate(epics, 1):
                    values = self._values(sub, epic)
                    if values is not None:
                        head.append(self._update_line(sub, idx, values))
                        if sub.scale == "PRICE":
                            self.price_updates[epic].append(self._last[epic])
            elif snapshot:
                head.extend(f"EOS,{sub_id},{idx}" for idx in range(1, len(items) + 1))
            await self._write(session, head, data=True)
        elif op == "delete":
            sub_id = int(p["LS_subId"])
            if session.subs.pop(sub_id, None) is not None:
                await self._write(session, [f"UNSUB,{sub_id}"], data=True)
        elif op == "destroy":
            self._sessions.pop(session.id, None)
            await self._write(session, ["END,31,Session destroyed by the client"], data=False)
            if session.ws is not None:
                await session.ws.close()

    def _known(self, epic: str) -> bool:
        if self.any_epic:
            return bool(epic) and "." in epic and ":" not in epic
        return epic in self.epics

    def _check_subscription(self, session: _LSSession, p: dict[str, str]) -> tuple[int, str] | None:
        items = p.get("LS_group", "").split(" ")
        fields = p.get("LS_schema", "").split(" ")
        mode = p.get("LS_mode", "")
        kinds = set()
        for item in items:
            if item.startswith("MARKET:"):
                return 21, "MARKET items were decommissioned: use PRICE:<accountId>:<epic>"
            if item.startswith("PRICE:"):
                _, account, epic = [*item.split(":", 2), "", ""][:3]
                if account != session.account_id or not self._known(epic):
                    return 21, "Bad Item Group name"
                kinds.add("PRICE")
            elif item.startswith("CHART:"):
                epic, _, scale = item[6:].rpartition(":")
                if not self._known(epic) or scale not in {"TICK", *CHART_SCALE_MS}:
                    return 21, "Bad Item Group name"
                kinds.add("TICK" if scale == "TICK" else "CANDLE")
            else:
                return 21, "Bad Item Group name"
        if len(kinds) != 1:
            return 21, "Bad Item Group name"
        kind = kinds.pop()
        allowed = {"PRICE": PRICE_FIELDS, "TICK": TICK_FIELDS, "CANDLE": CANDLE_FIELDS}[kind]
        if any(f not in allowed for f in fields):
            return 23, "Bad Field Schema name"
        if mode != ("DISTINCT" if kind == "TICK" else "MERGE"):
            return 24, "Subscription mode not allowed"
        if kind == "PRICE" and p.get("LS_data_adapter") != "Pricing":
            return 17, "Bad Data Adapter name"
        return None

    # ---- the market ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        if self.time_step_ms is None:
            return time.time_ns() // 1_000_000
        return self._clock_ms

    def _next_tick(self, epic: str) -> Tick:
        n = self._n[epic] = self._n[epic] + 1
        if self.time_step_ms is not None:
            ts = self._clock_ms
        else:
            ts = time.time_ns() // 1_000_000
            previous = self._last.get(epic)
            if previous is not None and ts <= previous.ts_ms:
                ts = previous.ts_ms + 1
        bid = _base(epic) + ((n * 7) % 41 - 20) * _TICK
        offer = bid + Decimal("0.00006")
        traded = epic in self.traded
        mid = (bid + offer) / 2
        return Tick(
            ts, _fmt(bid), _fmt(offer), f"{mid:.6f}" if traded else None, "1" if traded else None
        )

    def _values(self, sub: _Sub, epic: str) -> list[str | None] | None:
        if sub.scale == "PRICE":
            tick = self._last.get(epic)
            if tick is None:
                return None
            source: dict[str, str | None] = {
                "BIDPRICE1": tick.bid,
                "ASKPRICE1": tick.offer,
                "BIDSIZE1": "1000000",
                "ASKSIZE1": "1000000",
                "TIMESTAMP": str(tick.ts_ms),
                "DLG_FLAG": "DEAL",
            }
        elif sub.scale == "TICK":
            tick = self._last.get(epic)
            if tick is None:
                return None
            source = {
                "BID": tick.bid,
                "OFR": tick.offer,
                "LTP": tick.last,
                "LTV": tick.volume,
                "UTM": str(tick.ts_ms),
            }
        else:
            bar = self._bars.get((epic, sub.scale))
            if bar is None:
                return None
            source = bar.fields()
        return [source.get(f) for f in sub.fields]

    def _update_line(self, sub: _Sub, idx: int, values: list[str | None]) -> str:
        line = f"U,{sub.sub_id},{idx},{encode_update(values, sub.last.get(idx))}"
        sub.last[idx] = values
        return line

    def _market_epics(self) -> list[str]:
        epics = list(self.epics)
        for session in self._sessions.values():
            for sub in session.subs.values():
                epics.extend(e for e in sub.epics if e not in epics)
        return epics

    async def _market(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            if self.paused:
                continue
            if self.time_step_ms is not None:
                self._clock_ms += self.time_step_ms
            for epic in self._market_epics():
                tick = self._next_tick(epic)
                self._last[epic] = tick
                closed: dict[str, Bar] = {}
                for scale, length in CHART_SCALE_MS.items():
                    start = tick.ts_ms // length * length
                    bar = self._bars.get((epic, scale))
                    if bar is not None and bar.start_ms != start:
                        bar.closed = True
                        closed[scale] = bar
                        bar = None
                    if bar is None:
                        bid, ofr = Decimal(tick.bid), Decimal(tick.offer)
                        bar = Bar(start, [bid] * 4, [ofr] * 4, tick.ts_ms)
                    else:
                        bar.add(tick)
                    self._bars[(epic, scale)] = bar
                await self._publish(epic, tick, closed)

    async def _publish(self, epic: str, tick: Tick, closed: dict[str, Bar]) -> None:
        for session in list(self._sessions.values()):
            lines: list[str] = []
            for sub in session.subs.values():
                for idx, sub_epic in enumerate(sub.epics, 1):
                    if sub_epic != epic:
                        continue
                    if sub.scale in closed:
                        bar = closed[sub.scale]
                        fields = bar.fields()
                        lines.append(
                            self._update_line(sub, idx, [fields.get(f) for f in sub.fields])
                        )
                        self.candles[(epic, sub.scale)][bar.start_ms] = bar
                    values = self._values(sub, epic)
                    if values is None:
                        continue
                    lines.append(self._update_line(sub, idx, values))
                    if sub.scale == "PRICE":
                        self.price_updates[epic].append(tick)
                    elif sub.scale == "TICK":
                        self.tick_updates[epic].append(tick)
                    else:
                        self.candles[(epic, sub.scale)][self._bars[(epic, sub.scale)].start_ms] = (
                            self._bars[(epic, sub.scale)]
                        )
            if lines:
                await self._write(session, lines, data=True)

    async def _write(self, session: _LSSession, lines: list[str], *, data: bool) -> None:
        if not lines:
            return
        async with session.lock:
            if data:
                session.notes.extend(lines)
            ws = session.ws
            if ws is None or ws.closed:
                return
            try:
                await ws.send_str("\r\n".join(lines) + "\r\n")
            except (ConnectionError, RuntimeError):
                return
            if data:
                session.sent = len(session.notes)
            session.last_write = time.monotonic()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if session.ws is not None:
                    if now - session.last_write >= session.keepalive_ms / 1000:
                        await self._write(session, ["PROBE"], data=False)
                elif (
                    session.unbound_since is not None
                    and now - session.unbound_since > self.session_linger
                ):
                    self._sessions.pop(session.id, None)


def _epic_of(item: str) -> str:
    if item.startswith("PRICE:"):
        return item.split(":", 2)[2]
    return item[6:].rpartition(":")[0]


def _base(epic: str) -> Decimal:
    return Decimal("1.10000") + (zlib.crc32(epic.encode()) % 1000) * Decimal("0.001")


def _parse_ig_time(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000


def _port(site: web.TCPSite) -> int:
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None)
    assert sockets
    return int(sockets[0].getsockname()[1])


__all__ = ("ACCOUNTS", "API_KEY", "PASSWORD", "USERNAME", "Bar", "FakeIG", "Tick", "tlcp_value")
