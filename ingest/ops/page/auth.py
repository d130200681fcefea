"""Who may see ``/ops``, and whether a POST to it comes from the page itself.

The page is enabled by configuring credentials, never by default: HTTP basic auth
(``INGEST_OPS_USER`` + ``INGEST_OPS_PASSWORD``) for browsers, a bearer token
(``INGEST_OPS_TOKEN``) for tools, or both. Credentials are compared as SHA-256 digests in
constant time, every configured one, without stopping at the first match.

Browsers resend basic credentials on every request to the origin, including requests a
hostile page makes them send, so a POST authenticated by basic auth must also come from
our own origin: ``Origin`` (or, without it, ``Referer``) must name this host, or one of
``INGEST_OPS_ORIGINS`` when a proxy rewrites ``Host``. A bearer token is never sent by a
browser on its own, so requests carrying one skip that check.

Wrong credentials are limited per client address (``INGEST_OPS_LOGIN_LIMIT``, enforced by
``ingest.ops.page.guard`` with ``ingest.web.failure_limit``); ``attempt`` says why a login
failed, in words safe to log: never the tried user, password or token.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from limits import RateLimitItem

from ingest.credentials import matches
from ingest.errors import ConfigError
from ingest.web.failure_limit import parse_limit

REALM = "vapi-ingest ops"
DISABLED_HINT = "set INGEST_OPS_USER and INGEST_OPS_PASSWORD (basic auth) and/or INGEST_OPS_TOKEN (bearer) to enable it"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_BLOCKED_FETCH_SITES = frozenset({"cross-site", "same-site"})
DEFAULT_LOGIN_LIMIT = "10/minute"


class LoginScheme(enum.StrEnum):
    BASIC = "basic"
    BEARER = "bearer"


class LoginFailure(enum.StrEnum):
    """Why credentials were refused: logged and counted, so it never carries what was tried."""

    WRONG_CREDENTIALS = "wrong_credentials"
    MALFORMED = "malformed"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Attempt:
    """One ``Authorization`` header judged: the scheme it claimed and, on failure, why."""

    claimed: str  # basic, bearer or other
    scheme: LoginScheme | None
    failure: LoginFailure | None


def normalise_origin(url: str) -> str | None:
    """``scheme://host[:port]`` in lower case without the scheme's default port; None if not a URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class OpsAuth:
    """The page's credentials; ``enabled`` is False when none are configured."""

    user: bytes | None = field(default=None, repr=False)
    password: bytes | None = field(default=None, repr=False)
    token: bytes | None = field(default=None, repr=False)
    trusted_origins: tuple[str, ...] = ()
    login_limit: RateLimitItem = field(default_factory=lambda: parse_limit("", DEFAULT_LOGIN_LIMIT))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OpsAuth:
        user, password = env.get("INGEST_OPS_USER", ""), env.get("INGEST_OPS_PASSWORD", "")
        token = env.get("INGEST_OPS_TOKEN", "").strip()
        if bool(user) != bool(password):
            missing = "INGEST_OPS_PASSWORD" if user else "INGEST_OPS_USER"
            raise ConfigError(f"{missing} must be set too: basic auth for /ops needs a user and a password")
        if ":" in user:
            raise ConfigError("INGEST_OPS_USER must not contain ':' (basic auth cannot carry it)")
        origins = []
        for raw in env.get("INGEST_OPS_ORIGINS", "").split(","):
            if raw.strip():
                origin = normalise_origin(raw)
                if origin is None:
                    raise ConfigError(f"INGEST_OPS_ORIGINS entry {raw.strip()!r} is not an http(s) origin")
                origins.append(origin)
        return cls(
            user=user.encode() or None,
            password=password.encode() or None,
            token=token.encode() or None,
            trusted_origins=tuple(origins),
            login_limit=parse_limit(
                "INGEST_OPS_LOGIN_LIMIT", env.get("INGEST_OPS_LOGIN_LIMIT", "").strip() or DEFAULT_LOGIN_LIMIT
            ),
        )

    @property
    def basic(self) -> bool:
        return self.user is not None and self.password is not None

    @property
    def enabled(self) -> bool:
        return self.basic or self.token is not None

    def challenges(self) -> list[str]:
        """``WWW-Authenticate`` values for a 401: Basic first, so browsers ask for a password."""
        challenges = [f'Basic realm="{REALM}"'] if self.basic else []
        return challenges + ([f'Bearer realm="{REALM}"'] if self.token is not None else [])

    def authenticate(self, authorization: str | None) -> LoginScheme | None:
        """The scheme that accepted the ``Authorization`` header, or None."""
        return self.attempt(authorization).scheme

    def attempt(self, authorization: str | None) -> Attempt:
        """The ``Authorization`` header judged: accepted by a scheme, or refused and why."""
        kind, _, credentials = (authorization or "").strip().partition(" ")
        kind, credentials = kind.lower(), credentials.strip()
        claimed = kind if kind in set(LoginScheme) else "other"
        if not credentials:
            return Attempt(claimed, None, LoginFailure.MALFORMED)
        if kind == "bearer" and self.token is not None:
            matched = matches(credentials.encode("utf-8", "surrogatepass"), self.token)
            return _judged(claimed, LoginScheme.BEARER, matched)
        if kind == "basic" and self.user is not None and self.password is not None:
            try:
                decoded = base64.b64decode(credentials, validate=True)
            except (binascii.Error, ValueError):
                return Attempt(claimed, None, LoginFailure.MALFORMED)
            user, colon, password = decoded.partition(b":")
            if not colon:
                return Attempt(claimed, None, LoginFailure.MALFORMED)
            return _judged(claimed, LoginScheme.BASIC, matches(user, self.user) & matches(password, self.password))
        return Attempt(claimed, None, LoginFailure.UNSUPPORTED_SCHEME)

    def same_origin(self, headers: Mapping[str, str], scheme: str) -> bool:
        """Whether a state-changing request was sent by a page of this origin."""
        if headers.get("sec-fetch-site", "").lower() in _BLOCKED_FETCH_SITES:
            return False
        claimed = headers.get("origin") or headers.get("referer")
        source = normalise_origin(claimed) if claimed and claimed != "null" else None
        if source is None:
            return False
        own = normalise_origin(f"{scheme}://{headers.get('host', '')}")
        return source == own or source in self.trusted_origins


def _judged(claimed: str, scheme: LoginScheme, matched: bool) -> Attempt:
    return Attempt(claimed, scheme, None) if matched else Attempt(claimed, None, LoginFailure.WRONG_CREDENTIALS)
