"""Webhook authentication settings: frozen, typed, read once from an environment mapping.

The variables (``VAPI_SECRET``, ``VAPI_BEARER_*``, ``VAPI_HMAC_*``, ``INGEST_INSECURE``) and
their defaults are documented once, in the README's configuration table. What the code
decides beyond that table: the first secret of a comma-separated list is the current one
(``sign`` uses it), the others are still accepted; a signature header may carry several
signatures (the sender rotating its key) and any one may match; an unsigned timestamp
proves nothing, so a timestamp header next to a payload template without ``{timestamp}``
is an error; Vapi's ``{method}``, ``{url}`` and ``{svix-id}`` placeholders are refused,
since the URL Vapi signed cannot be rebuilt reliably behind proxies.

Which schemes a request may pass is ``VAPI_AUTH_MODE`` (``AuthMode``): with an HMAC secret
the default is ``hmac`` (a valid signature is required, a shared secret or bearer token
alone is not enough, and a wrong signature is refused whatever else is right); with only
``VAPI_SECRET`` it is ``secret``; ``either`` (a valid signature or a valid secret) only
when asked for, and only with both configured. ``log_mode`` says at start which is in force.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from ingest.errors import ConfigError
from ingest.settings import env_flag

__all__ = [
    "Algorithm",
    "AuthConfigError",
    "AuthMode",
    "AuthSettings",
    "Encoding",
    "HmacSettings",
    "PayloadTemplate",
    "Placeholder",
    "Secret",
    "TimestampUnit",
]

log = logging.getLogger("ingest.web.auth")

_E = TypeVar("_E", bound=enum.StrEnum)
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SHARED_SECRET = re.compile(r"[\x21-\x7e]+")
_PLACEHOLDER = re.compile(rb"\{([^{}]*)\}")


class AuthConfigError(ConfigError):
    """The authentication environment is invalid; ``variable`` names the culprit."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class AuthMode(enum.StrEnum):
    """Which configured schemes a request may pass."""

    HMAC = "hmac"  # a valid signature, nothing else
    SECRET = "secret"  # noqa: S105 - a mode name: the shared secret or bearer token
    EITHER = "either"  # a valid signature or a valid secret (explicit only)
    INSECURE = "insecure"  # nothing configured, INGEST_INSECURE on


class Algorithm(enum.StrEnum):
    SHA256 = "sha256"
    SHA512 = "sha512"
    SHA1 = "sha1"


class Encoding(enum.StrEnum):
    HEX = "hex"
    BASE64 = "base64"


class TimestampUnit(enum.StrEnum):
    AUTO = "auto"
    SECONDS = "s"
    MILLISECONDS = "ms"


class Placeholder(enum.StrEnum):
    TIMESTAMP = "timestamp"
    BODY = "body"


@dataclass(frozen=True, repr=False)
class Secret:
    """Key material as bytes; its repr never shows the value."""

    value: bytes

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True)
class PayloadTemplate:
    """The signed-string template, split into literal bytes and placeholders."""

    text: str
    parts: tuple[bytes | Placeholder, ...]

    @classmethod
    def parse(cls, text: str) -> PayloadTemplate:
        raw, start = text.encode(), 0
        literals: list[bytes] = []
        parts: list[bytes | Placeholder] = []
        for match in _PLACEHOLDER.finditer(raw):
            literals.append(raw[start : match.start()])
            parts += [literals[-1], _placeholder(match.group(1).decode())]
            start = match.end()
        literals.append(raw[start:])
        parts.append(literals[-1])
        if any(b"{" in literal or b"}" in literal for literal in literals):
            raise AuthConfigError("VAPI_HMAC_PAYLOAD", "unbalanced '{' or '}'")
        template = cls(text, tuple(p for p in parts if not isinstance(p, bytes) or p))
        if not template.signs(Placeholder.BODY):
            raise AuthConfigError("VAPI_HMAC_PAYLOAD", "must contain {body}, or the body is not signed")
        return template

    def signs(self, placeholder: Placeholder) -> bool:
        """Whether the template substitutes ``placeholder``."""
        return any(part is placeholder for part in self.parts)

    def render(self, *, timestamp: bytes, body: bytes) -> bytes:
        """Substitute on bytes, so braces or invalid UTF-8 in the body are harmless."""
        return b"".join(self.chunks(timestamp=timestamp, body=body))

    def chunks(self, *, timestamp: bytes, body: bytes) -> list[bytes]:
        """The signed string in pieces, to feed a digest without copying the body."""
        values = {Placeholder.TIMESTAMP: timestamp, Placeholder.BODY: body}
        return [values[p] if isinstance(p, Placeholder) else p for p in self.parts]


@dataclass(frozen=True)
class HmacSettings:
    secrets: tuple[Secret, ...]
    algorithm: Algorithm
    signature_header: str
    timestamp_header: str | None
    payload: PayloadTemplate
    prefix: str
    encoding: Encoding
    timestamp_unit: TimestampUnit
    tolerance: int

    @classmethod
    def from_env(cls, env: Mapping[str, str], secrets: tuple[Secret, ...]) -> HmacSettings:
        payload = PayloadTemplate.parse(env.get("VAPI_HMAC_PAYLOAD") or "{timestamp}.{body}")
        return cls(
            secrets=secrets,
            algorithm=_choice(env, "VAPI_HMAC_ALGORITHM", Algorithm, Algorithm.SHA256),
            signature_header=_header(env, "VAPI_HMAC_SIGNATURE_HEADER", "x-signature"),
            timestamp_header=_timestamp_header(env, payload),
            payload=payload,
            prefix=env.get("VAPI_HMAC_PREFIX", "").strip(),
            encoding=_choice(env, "VAPI_HMAC_ENCODING", Encoding, Encoding.HEX),
            timestamp_unit=_choice(env, "VAPI_HMAC_TIMESTAMP_UNIT", TimestampUnit, TimestampUnit.AUTO),
            tolerance=_tolerance(env),
        )


@dataclass(frozen=True)
class AuthSettings:
    shared_secrets: tuple[Secret, ...]
    bearer_header: str
    bearer_prefix: str
    hmac: HmacSettings | None
    insecure: bool
    mode: AuthMode | None = None  # None: as VAPI_AUTH_MODE's default (``in_force``)

    @property
    def configured(self) -> bool:
        """Whether any authentication scheme is configured."""
        return bool(self.shared_secrets) or self.hmac is not None

    @property
    def in_force(self) -> AuthMode:
        """The mode: as set, else insecure, hmac with an HMAC secret, or secret."""
        if self.mode is not None:
            return self.mode
        if self.insecure:
            return AuthMode.INSECURE
        return AuthMode.HMAC if self.hmac is not None else AuthMode.SECRET

    @property
    def accepts_hmac(self) -> bool:
        """Whether a valid signature is accepted (and, in ``hmac`` mode, required)."""
        return self.hmac is not None and self.in_force in (AuthMode.HMAC, AuthMode.EITHER)

    @property
    def accepts_secret(self) -> bool:
        """Whether a valid shared secret or bearer token is accepted."""
        return bool(self.shared_secrets) and self.in_force in (AuthMode.SECRET, AuthMode.EITHER)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthSettings:
        hmac_secrets = _hmac_secrets(env)
        settings = cls(
            shared_secrets=_shared_secrets(env),
            bearer_header=_header(env, "VAPI_BEARER_HEADER", "Authorization"),
            bearer_prefix=env.get("VAPI_BEARER_PREFIX", "Bearer").strip(),
            hmac=HmacSettings.from_env(env, hmac_secrets) if hmac_secrets else None,
            insecure=_flag(env, "INGEST_INSECURE"),
        )
        if settings.insecure and settings.configured:
            raise AuthConfigError("INGEST_INSECURE", "set together with VAPI_SECRET or VAPI_HMAC_SECRET")
        if not settings.insecure and not settings.configured:
            raise AuthConfigError("VAPI_SECRET", "no VAPI_SECRET or VAPI_HMAC_SECRET, and INGEST_INSECURE off")
        return dataclasses.replace(settings, mode=_mode(env, settings))

    def log_mode(self) -> None:
        """One log line at start naming the mode in force and what it ignores; never a secret."""
        if self.in_force is AuthMode.INSECURE:
            log.warning("INGEST_INSECURE is set: webhooks are accepted WITHOUT authentication (local development only)")
            return
        ignored = [
            name
            for name, unused in (
                ("VAPI_HMAC_SECRET", self.hmac is not None and not self.accepts_hmac),
                ("VAPI_SECRET", bool(self.shared_secrets) and not self.accepts_secret),
            )
            if unused
        ]
        log.log(
            logging.WARNING if ignored else logging.INFO,
            "webhook authentication",
            extra={"auth_mode": str(self.in_force), **({"ignored": ignored} if ignored else {})},
        )


def _mode(env: Mapping[str, str], settings: AuthSettings) -> AuthMode:
    if settings.insecure:
        if env.get("VAPI_AUTH_MODE", "").strip():
            raise AuthConfigError("VAPI_AUTH_MODE", "set, but INGEST_INSECURE turns authentication off")
        return AuthMode.INSECURE
    default = AuthMode.HMAC if settings.hmac is not None else AuthMode.SECRET
    mode = _choice(env, "VAPI_AUTH_MODE", AuthMode, default)
    if mode is AuthMode.INSECURE:
        raise AuthConfigError("VAPI_AUTH_MODE", "expected hmac, secret or either (INGEST_INSECURE turns it off)")
    if mode in (AuthMode.HMAC, AuthMode.EITHER) and settings.hmac is None:
        raise AuthConfigError("VAPI_AUTH_MODE", f"{mode} needs VAPI_HMAC_SECRET")
    if mode in (AuthMode.SECRET, AuthMode.EITHER) and not settings.shared_secrets:
        raise AuthConfigError("VAPI_AUTH_MODE", f"{mode} needs VAPI_SECRET")
    return mode


def _placeholder(name: str) -> Placeholder:
    try:
        return Placeholder(name)
    except ValueError:
        problem = f"unsupported placeholder {{{name}}}; only {{timestamp}} and {{body}} can be verified here"
        raise AuthConfigError("VAPI_HMAC_PAYLOAD", problem) from None


def _split(env: Mapping[str, str], name: str) -> list[str]:
    return [part.strip() for part in env.get(name, "").split(",") if part.strip()]


def _shared_secrets(env: Mapping[str, str]) -> tuple[Secret, ...]:
    values = _split(env, "VAPI_SECRET")
    if not all(_SHARED_SECRET.fullmatch(v) for v in values):
        raise AuthConfigError("VAPI_SECRET", "secrets must be visible ASCII characters")
    return tuple(Secret(v.encode()) for v in values)


def _hmac_secrets(env: Mapping[str, str]) -> tuple[Secret, ...]:
    is_base64 = _flag(env, "VAPI_HMAC_SECRET_IS_BASE64")
    try:
        if is_base64:
            return tuple(Secret(base64.b64decode(v, validate=True)) for v in _split(env, "VAPI_HMAC_SECRET"))
        return tuple(Secret(v.encode("utf-8", "surrogateescape")) for v in _split(env, "VAPI_HMAC_SECRET"))
    except (binascii.Error, UnicodeError):
        problem = "not valid base64" if is_base64 else "not encodable as UTF-8"
        raise AuthConfigError("VAPI_HMAC_SECRET", problem) from None


def _flag(env: Mapping[str, str], name: str) -> bool:
    try:
        return env_flag(env, name)
    except ConfigError:
        raise AuthConfigError(name, "expected true or false") from None


def _choice(env: Mapping[str, str], name: str, kind: type[_E], default: _E) -> _E:
    value = env.get(name, "").strip().lower() or default.value
    try:
        return kind(value)
    except ValueError:
        raise AuthConfigError(name, f"expected one of {', '.join(kind)}") from None


def _header(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _HEADER_NAME.fullmatch(value):
        raise AuthConfigError(name, "not a valid HTTP header name")
    return value.lower()


def _timestamp_header(env: Mapping[str, str], payload: PayloadTemplate) -> str | None:
    name = "VAPI_HMAC_TIMESTAMP_HEADER"
    if not payload.signs(Placeholder.TIMESTAMP):
        if env.get(name, "").strip():
            raise AuthConfigError(name, "set, but VAPI_HMAC_PAYLOAD does not sign {timestamp}")
        return None
    if not env.get(name, "x-timestamp").strip():
        raise AuthConfigError(name, "empty, but VAPI_HMAC_PAYLOAD signs {timestamp}")
    return _header(env, name, "x-timestamp")


def _tolerance(env: Mapping[str, str]) -> int:
    value = env.get("VAPI_HMAC_TOLERANCE", "").strip() or "300"
    if not value.isascii() or not value.isdigit() or int(value) < 1:
        raise AuthConfigError("VAPI_HMAC_TOLERANCE", "expected a whole number of seconds, at least 1")
    return int(value)
