"""Named bearer tokens and roles.

`OVERNIGHT_TOKENS="ops-agent:admin:<secret>,app:serve:<secret>,alice:read:<secret>"`. Secrets are kept only as
SHA-256 digests and compared in constant time against every token (no early exit). The token's *name* is the
actor written into every history row; the secret never reaches a log line or a response.
Roles: `admin` may do everything, `serve` may predict, `read` may GET and see the review pages.
Must not import SQL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal, get_args

import structlog
from fastapi import Request

from overnight.errors import ConfigError, Forbidden, Unauthorized

Role = Literal["admin", "serve", "read"]
ROLES: tuple[str, ...] = get_args(Role)
MIN_TOKEN_CHARS = 32
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


@dataclass(frozen=True)
class _Token:
    principal: Principal
    digest: bytes


def parse_token_spec(spec: str, *, dev: bool) -> list[tuple[str, Role, str]]:
    """Parse `name:role:secret,…`; every problem is a `ConfigError` that names the entry, never the secret."""
    entries: list[tuple[str, Role, str]] = []
    for index, raw in enumerate(filter(None, (part.strip() for part in spec.split(","))), start=1):
        name, role, secret = [*raw.split(":", 2), "", ""][:3]
        where = f"OVERNIGHT_TOKENS entry {index} ({name or 'unnamed'})"
        if not _NAME.match(name):
            raise ConfigError(f"{where}: the name must be letters, digits, '.', '_' or '-' (format name:role:secret)")
        if role not in ROLES:
            raise ConfigError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        if len(secret) < MIN_TOKEN_CHARS and not dev:
            raise ConfigError(
                f"{where}: the secret is {len(secret)} characters; at least {MIN_TOKEN_CHARS} are required "
                "(OVERNIGHT_DEV=1 allows shorter ones for development only)"
            )
        if not secret:
            raise ConfigError(f"{where}: the secret is empty")
        if any(existing == name for existing, _, _ in entries):
            raise ConfigError(f"{where}: the name {name!r} is used twice")
        shared = next((i for i, (_, _, other) in enumerate(entries, start=1) if other == secret), None)
        if shared is not None:
            raise ConfigError(f"{where}: the same secret as entry {shared} ({entries[shared - 1][0]}): each name needs "
                              "its own secret, or the API could not tell who called (and with which role)")
        entries.append((name, role, secret))  # type: ignore[arg-type]  # role checked against ROLES above
    if not entries:
        raise ConfigError("OVERNIGHT_TOKENS is empty: no one could call the API (format name:role:secret,…)")
    return entries


class TokenRegistry:
    def __init__(self, entries: list[tuple[str, Role, str]]) -> None:
        self._tokens = [_Token(Principal(name, role), _digest(secret)) for name, role, secret in entries]
        self._by_name = {token.principal.name: token for token in self._tokens}

    @classmethod
    def from_spec(cls, spec: str, *, dev: bool) -> TokenRegistry:
        return cls(parse_token_spec(spec, dev=dev))

    def find(self, authorization: str | None) -> Principal | None:
        """The principal a header names, or None. Constant time in the token compared."""
        if not authorization:
            return None
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        digest, match = _digest(presented.strip()), None
        for token in self._tokens:
            if hmac.compare_digest(digest, token.digest):
                match = token.principal
        return match

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
        principal = self.find(authorization)
        if principal is None:
            raise Unauthorized("invalid bearer token")
        return principal

    def issue_session(self, principal: Principal, *, expires_at: int) -> str:
        """A review-page session: `name:expires_at:mac`, keyed by the token's own digest, so the secret never sits
        in a cookie, and removing or changing a token ends its sessions."""
        return f"{principal.name}:{expires_at}:{self._session_mac(principal.name, expires_at)}"

    def from_session(self, cookie: str | None, *, now: int) -> Principal | None:
        name, _, rest = (cookie or "").partition(":")
        expires, _, mac = rest.partition(":")
        if name not in self._by_name or not expires.isdigit() or int(expires) <= now:
            return None
        if not hmac.compare_digest(mac, self._session_mac(name, int(expires))):
            return None
        return self._by_name[name].principal

    def _session_mac(self, name: str, expires_at: int) -> str:
        key = self._by_name[name].digest
        return hmac.new(key, f"review-session|{name}|{expires_at}".encode(), hashlib.sha256).hexdigest()


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class Require:
    """A route dependency: authenticate, then allow `roles` (admin always). Its `roles` are the route's
    declared permission, which the route inventory test reads."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(("admin", *roles))

    async def __call__(self, request: Request) -> Principal:
        registry: TokenRegistry = request.app.state.tokens
        return self.admit(request, registry.authenticate(request.headers.get("authorization")))

    def admit(self, request: Request, principal: Principal) -> Principal:
        """Refuse a role outside `roles`; otherwise the principal becomes the request's actor."""
        if principal.role not in self.roles:
            raise Forbidden(
                f"token {principal.name!r} has role {principal.role}; this needs {' or '.join(sorted(self.roles))}"
            )
        request.state.actor = principal.name
        structlog.contextvars.bind_contextvars(actor=principal.name)
        return principal


SESSION_COOKIE = "overnight_review"


class SignInRequired(Exception):  # not an error shape: the review pages answer it with a redirect
    def __init__(self, wanted: str) -> None:
        super().__init__(wanted)
        self.wanted = wanted


class ReviewSession(Require):
    """`Require("read")` for the browser: a bearer token or the review session cookie. With neither, the page
    redirects to the sign-in form instead of answering 401; a serve token is refused (403) either way."""

    async def __call__(self, request: Request) -> Principal:
        registry: TokenRegistry = request.app.state.tokens
        authorization = request.headers.get("authorization")
        if authorization:
            return await super().__call__(request)
        principal = registry.from_session(request.cookies.get(SESSION_COOKIE), now=request.app.state.store.clock())
        if principal is None:
            raise SignInRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return self.admit(request, principal)


require_admin = Require()
require_read = Require("read")
require_serve = Require("serve")
require_any = Require("read", "serve")
