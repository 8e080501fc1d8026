"""IG's REST session: login (v2 or v3 OAuth), token refresh, and authenticated requests.

One :class:`IGSession` per source stage (the connector and the backfiller each hold one). It logs
in lazily, keeps the CST / X-SECURITY-TOKEN pair the Lightstreamer server wants as its password,
logs in again when the tokens are older than ``token_refresh`` or were invalidated (IG drops every
token in its weekend maintenance), and never lets a secret reach a log line, an exception message
or a repr.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio
from multidict import CIMultiDict

from tickwire_ig.settings import IGSettings

#: IG's error codes for "too many requests" (HTTP 403).
RATE_LIMIT_CODES = frozenset(
    {
        "error.public-api.exceeded-api-key-allowance",
        "error.public-api.exceeded-account-allowance",
        "error.public-api.exceeded-account-trading-allowance",
        "error.public-api.exceeded-account-historical-data-allowance",
    }
)
HISTORY_ALLOWANCE_CODE = "error.public-api.exceeded-account-historical-data-allowance"
#: Error codes that mean "the tokens are no longer valid: log in again".
TOKEN_INVALID_CODES = frozenset(
    {
        "error.security.client-token-invalid",
        "error.security.oauth-token-invalid",
        "error.security.account-token-invalid",
        "error.security.client-token-missing",
    }
)


class IGError(Exception):
    """IG answered a REST request with an error (``code`` is IG's ``errorCode``)."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class AuthError(IGError):
    """The credentials (or tokens) were refused."""


@dataclass(frozen=True)
class StreamLogin:
    """What the Lightstreamer client needs: the server, the user and the password.

    ``password`` is ``CST-<cst>|XST-<token>``: a secret, kept out of the repr.
    """

    endpoint: str
    account_id: str
    password: str

    def __repr__(self) -> str:
        return f"StreamLogin(endpoint={self.endpoint!r}, account_id={self.account_id!r})"


@dataclass
class Reply:
    """One REST answer, read whole (IG's answers are small JSON documents)."""

    status_code: int
    reason_phrase: str
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON (numbers that are not integers as :class:`~decimal.Decimal`)."""
        from decimal import Decimal

        return json.loads(self.content or b"null", parse_float=Decimal)


class IGSession:
    """An IG REST session for one source (thread-unsafe; use from one event loop)."""

    def __init__(self, settings: IGSettings) -> None:
        self.settings = settings
        self._cst: str | None = None
        self._xst: str | None = None
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._token_type = "Bearer"
        self._access_expiry = 0.0
        self._logged_in_at = 0.0
        self.account_id: str | None = None
        self.lightstreamer_endpoint: str | None = None
        self.logins = 0
        self._lock = anyio.Lock()

    # ---- HTTP ------------------------------------------------------------------------

    def _headers(self, version: int, auth: bool = True) -> dict[str, str]:
        headers = {
            "X-IG-API-KEY": self.settings.api_key.get_secret_value(),
            "Content-Type": "application/json; charset=UTF-8",
            "Accept": "application/json; charset=UTF-8",
            "Version": str(version),
        }
        if auth:
            if self.settings.session_version == 3 and self._access_token is not None:
                headers["Authorization"] = f"{self._token_type} {self._access_token}"
                if self.account_id:
                    headers["IG-ACCOUNT-ID"] = self.account_id
            elif self._cst is not None and self._xst is not None:
                headers["CST"] = self._cst
                headers["X-SECURITY-TOKEN"] = self._xst
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        *,
        version: int,
        auth: bool = True,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> Reply:
        # aiohttp (the SDK's own HTTP library) rather than httpx: httpcore logs every response
        # header at DEBUG, and IG's answer to a login carries the session tokens in headers.
        url = self.settings.rest_url + path
        timeout = aiohttp.ClientTimeout(total=self.settings.rest_timeout.total_seconds())
        query = {k: str(v) for k, v in (params or {}).items()}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as client,
                client.request(
                    method, url, headers=self._headers(version, auth), params=query, json=json
                ) as response,
            ):
                body = await response.read()
                return Reply(
                    response.status,
                    response.reason or "",
                    body,
                    CIMultiDict(response.headers),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Neither carries headers or bodies; name the path, not the URL's query.
            raise IGError(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def error_of(response: Reply) -> IGError:
        """The :class:`IGError` an error response stands for."""
        code: str | None = None
        try:
            body = response.json()
            if isinstance(body, dict):
                raw = body.get("errorCode")
                code = str(raw) if raw is not None else None
        except ValueError:
            pass
        what = code or response.reason_phrase or "error"
        message = f"IG answered HTTP {response.status_code}: {what}"
        if response.status_code == 401 or (code is not None and code in TOKEN_INVALID_CODES):
            return AuthError(message, code, response.status_code)
        if code is not None and code.startswith("error.security"):
            return AuthError(message, code, response.status_code)
        return IGError(message, code, response.status_code)

    # ---- login -----------------------------------------------------------------------

    async def login(self) -> None:
        """Log in (``POST /session``, v2 or v3) and pick the configured account."""
        s = self.settings
        body = {
            "identifier": s.username.get_secret_value(),
            "password": s.password.get_secret_value(),
        }
        response = await self._send(
            "POST", "/session", version=s.session_version, auth=False, json=body
        )
        if response.status_code != 200:
            error = self.error_of(response)
            if error.code and error.code.startswith("error.security"):
                raise AuthError(
                    f"IG refused the login ({error.code}): check TICKWIRE_IG_USERNAME, "
                    "TICKWIRE_IG_PASSWORD and TICKWIRE_IG_API_KEY",
                    error.code,
                    error.status,
                )
            raise error
        data = response.json()
        self._cst = self._xst = self._access_token = None
        if s.session_version == 2:
            cst = response.headers.get("CST")
            xst = response.headers.get("X-SECURITY-TOKEN")
            if not cst or not xst:
                raise AuthError("IG's login answer carries no CST / X-SECURITY-TOKEN headers")
            self._cst, self._xst = cst, xst
            self.account_id = str(data.get("currentAccountId") or "")
        else:
            oauth = data.get("oauthToken") or {}
            self._access_token = str(oauth.get("access_token") or "")
            self._refresh_token = str(oauth.get("refresh_token") or "")
            self._token_type = str(oauth.get("token_type") or "Bearer")
            self._access_expiry = time.monotonic() + float(oauth.get("expires_in") or 60) - 5
            self.account_id = str(data.get("accountId") or "")
        endpoint = data.get("lightstreamerEndpoint")
        if not endpoint:
            raise IGError("IG's login answer carries no lightstreamerEndpoint")
        self.lightstreamer_endpoint = str(endpoint)
        self._logged_in_at = time.monotonic()
        self.logins += 1
        if s.account_id and s.account_id != self.account_id:
            await self._switch_account(s.account_id)
        if s.session_version == 3:
            await self._fetch_session_tokens()

    async def _switch_account(self, account_id: str) -> None:
        await self._refresh_access_if_due()
        response = await self._send(
            "PUT",
            "/session",
            version=1,
            json={"accountId": account_id, "defaultAccount": False},
        )
        if response.status_code != 200:
            error = self.error_of(response)
            raise IGError(
                f"cannot switch to account {account_id!r}: {error}", error.code, error.status
            )
        xst = response.headers.get("X-SECURITY-TOKEN")
        if xst and self.settings.session_version == 2:
            self._xst = xst
        self.account_id = account_id

    async def _fetch_session_tokens(self) -> None:
        """v3: streaming takes no OAuth token: ``GET /session?fetchSessionTokens=true``."""
        response = await self._send(
            "GET", "/session", version=1, params={"fetchSessionTokens": "true"}
        )
        if response.status_code != 200:
            raise self.error_of(response)
        cst = response.headers.get("CST")
        xst = response.headers.get("X-SECURITY-TOKEN")
        if not cst or not xst:
            raise AuthError("GET /session?fetchSessionTokens=true gave no CST / X-SECURITY-TOKEN")
        self._cst, self._xst = cst, xst
        endpoint = response.json().get("lightstreamerEndpoint")
        if endpoint:
            self.lightstreamer_endpoint = str(endpoint)

    async def _refresh_access_if_due(self) -> None:
        """v3: renew the 60 s access token with ``POST /session/refresh-token``."""
        if self.settings.session_version != 3 or time.monotonic() < self._access_expiry:
            return
        response = await self._send(
            "POST",
            "/session/refresh-token",
            version=1,
            auth=False,
            json={"refresh_token": self._refresh_token},
        )
        if response.status_code != 200:
            # The refresh token is gone too: start over.
            await self.login()
            return
        data = response.json()
        self._access_token = str(data.get("access_token") or "")
        self._refresh_token = str(data.get("refresh_token") or self._refresh_token)
        self._token_type = str(data.get("token_type") or "Bearer")
        self._access_expiry = time.monotonic() + float(data.get("expires_in") or 60) - 5

    def invalidate(self) -> None:
        """Forget the tokens (the server refused them): the next call logs in again."""
        self._cst = self._xst = self._access_token = None

    @property
    def stale(self) -> bool:
        """No tokens, or tokens older than ``token_refresh``."""
        if self._cst is None or self._xst is None:
            return True
        age = time.monotonic() - self._logged_in_at
        return age >= self.settings.token_refresh.total_seconds()

    async def ensure(self) -> None:
        """Log in if there are no valid tokens (or they are due for a refresh)."""
        async with self._lock:
            if self.stale:
                await self.login()
            else:
                await self._refresh_access_if_due()

    async def stream_login(self) -> StreamLogin:
        """The Lightstreamer user and password for the current tokens (logging in if needed)."""
        await self.ensure()
        assert self._cst is not None and self._xst is not None
        assert self.lightstreamer_endpoint is not None and self.account_id is not None
        return StreamLogin(
            self.lightstreamer_endpoint, self.account_id, f"CST-{self._cst}|XST-{self._xst}"
        )

    async def get(self, path: str, *, version: int, params: dict[str, Any]) -> Reply:
        """An authenticated GET; tokens refused once are renewed by a fresh login and retried."""
        await self.ensure()
        async with self._lock:
            await self._refresh_access_if_due()
        response = await self._send("GET", path, version=version, params=params)
        if response.status_code in (401, 403) and isinstance(self.error_of(response), AuthError):
            self.invalidate()
            await self.ensure()
            response = await self._send("GET", path, version=version, params=params)
        return response


__all__ = (
    "HISTORY_ALLOWANCE_CODE",
    "RATE_LIMIT_CODES",
    "AuthError",
    "IGError",
    "IGSession",
    "StreamLogin",
)
