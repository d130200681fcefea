"""Webhook authentication: ``verify`` and ``sign`` side by side, pure (time is passed in).

Settings and their environment variables live in ``ingest.web.auth_settings``. Rules:

- A request is accepted if it passes any scheme of the mode in force (``VAPI_AUTH_MODE``,
  ``ingest.web.auth_settings.AuthMode``) whose header is present: HMAC (signature header),
  ``shared_secret`` (``X-Vapi-Secret``), ``bearer`` (``VAPI_BEARER_HEADER``). In ``hmac`` mode,
  the default with an HMAC secret, only a valid signature passes: a right shared secret next
  to a wrong or missing signature is refused.
  Empty headers count as absent (Vapi sends an empty ``X-Vapi-Secret`` next to other credentials).
  When none is present the reason is ``missing_credentials`` (``missing_signature`` if HMAC is the
  only scheme in force); when all present ones fail, the first failure in the order above is reported.
- HMAC is computed over the raw body bytes and compared in constant time with every configured
  secret and every signature in the header, without stopping at the first match. The timestamp
  is checked for form before the signature and for freshness after it, so ``stale_timestamp``
  always means an authentic but old (or future) request. An accepted signature's digest is
  in ``AuthResult.signature``, for the replay memory (``ingest.web.replays``).
- Messages name headers and variables, never secrets or received values. They go to the log
  line only: the 401 answer carries the reason code and a generic text (``ingest.web.errors``).
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ingest.credentials import matches_any
from ingest.web.auth_settings import AuthSettings, Encoding, HmacSettings, TimestampUnit

__all__ = ["LEGACY_SECRET_HEADER", "AuthResult", "Reason", "Scheme", "needs_body", "sign", "verify"]

LEGACY_SECRET_HEADER = "x-vapi-secret"  # noqa: S105 - a header name, not a secret
_MAX_SIGNATURES = 8
_MS_THRESHOLD = 1e11
_TIMESTAMP = re.compile(r"[0-9]{1,20}(\.[0-9]{1,9})?")
_SEPARATORS = re.compile(r"[\s,]+")


class Scheme(enum.StrEnum):
    SHARED_SECRET = "shared_secret"  # noqa: S105 - a scheme name
    BEARER = "bearer"
    HMAC = "hmac"
    INSECURE = "insecure"


class Reason(enum.StrEnum):
    MISSING_CREDENTIALS = "missing_credentials"
    MALFORMED_CREDENTIALS = "malformed_credentials"
    SECRET_MISMATCH = "secret_mismatch"  # noqa: S105 - a reason code
    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE = "malformed_signature"
    SIGNATURE_MISMATCH = "signature_mismatch"
    MISSING_TIMESTAMP = "missing_timestamp"
    MALFORMED_TIMESTAMP = "malformed_timestamp"
    STALE_TIMESTAMP = "stale_timestamp"


@dataclass(frozen=True)
class AuthResult:
    """Outcome of ``verify``: the scheme that accepted (or rejected) and, on failure, why."""

    ok: bool
    scheme: Scheme | None
    reason: Reason | None = None
    message: str = ""
    skew_seconds: float | None = None
    signature: bytes | None = field(default=None, repr=False)  # HMAC only: the digest that matched

    def log_fields(self) -> dict[str, object]:
        """Fields for the delivery's log line, safe to show; the 401 answer itself only gets ``reason``."""
        fields: dict[str, object] = {
            "scheme": self.scheme,
            "reason": self.reason,
            "auth_detail": self.message,
            "skew_seconds": self.skew_seconds,
        }
        return {k: str(v) if isinstance(v, enum.Enum) else v for k, v in fields.items() if v not in (None, "")}


def verify(settings: AuthSettings, headers: Mapping[str, str], body: bytes, *, now: float) -> AuthResult:
    """Check one raw request against every configured scheme."""
    if not settings.configured:
        if settings.insecure:
            return AuthResult(True, Scheme.INSECURE, message="no authentication configured")
        return AuthResult(False, None, Reason.MISSING_CREDENTIALS, "no authentication configured")
    present = _present(headers)
    results = [
        _check_hmac(settings.hmac, present, body, now) if settings.hmac and settings.accepts_hmac else None,
        _check_shared_secret(settings, present) if settings.accepts_secret else None,
        _check_bearer(settings, present) if settings.accepts_secret else None,
    ]
    tried = [result for result in results if result is not None]
    accepted = [result for result in tried if result.ok]
    if accepted:
        return accepted[0]
    return tried[0] if tried else _missing(settings)


def needs_body(settings: AuthSettings, headers: Mapping[str, str]) -> bool:
    """Whether ``verify`` needs the body for these headers: only an HMAC signature is over it.

    When it does not, ``verify`` with an empty body decides, so the endpoint answers before
    reading a body it would refuse.
    """
    hmac_header = settings.hmac.signature_header if settings.hmac and settings.accepts_hmac else None
    return hmac_header is not None and bool(headers.get(hmac_header, "").strip())


def sign(settings: AuthSettings, body: bytes, *, now: float) -> dict[str, str]:
    """Headers a sender adds so ``verify`` accepts ``body``; uses the first (current) secret."""
    if settings.hmac is not None:
        return _sign_hmac(settings.hmac, body, now)
    if settings.shared_secrets:
        return {LEGACY_SECRET_HEADER: settings.shared_secrets[0].value.decode()}
    return {}


def _present(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased non-empty headers; the first of repeated headers wins, as in Starlette."""
    present: dict[str, str] = {}
    for name, value in headers.items():
        if value.strip():
            present.setdefault(name.lower(), value)
    return present


def _missing(settings: AuthSettings) -> AuthResult:
    if settings.hmac and not settings.accepts_secret:
        return _fail(Scheme.HMAC, Reason.MISSING_SIGNATURE, f"no {settings.hmac.signature_header} header")
    expected = [settings.hmac.signature_header] if settings.hmac and settings.accepts_hmac else []
    expected += [LEGACY_SECRET_HEADER, settings.bearer_header]
    return _fail(None, Reason.MISSING_CREDENTIALS, f"none of {', '.join(dict.fromkeys(expected))} present")


def _fail(scheme: Scheme | None, reason: Reason, message: str, skew: float | None = None) -> AuthResult:
    return AuthResult(False, scheme, reason, message, skew)


def _check_shared_secret(settings: AuthSettings, headers: Mapping[str, str]) -> AuthResult | None:
    value = headers.get(LEGACY_SECRET_HEADER)
    if value is None or not settings.shared_secrets:
        return None
    if matches_any(value, (secret.value for secret in settings.shared_secrets)):
        return AuthResult(True, Scheme.SHARED_SECRET)
    return _fail(Scheme.SHARED_SECRET, Reason.SECRET_MISMATCH, f"{LEGACY_SECRET_HEADER} matches no VAPI_SECRET")


def _check_bearer(settings: AuthSettings, headers: Mapping[str, str]) -> AuthResult | None:
    value, prefix = headers.get(settings.bearer_header), settings.bearer_prefix
    if value is None or not settings.shared_secrets:
        return None
    if not prefix and settings.bearer_header == LEGACY_SECRET_HEADER:
        return None  # the same check as the shared secret
    if prefix:
        if value[: len(prefix) + 1].lower() != f"{prefix.lower()} " or len(value) == len(prefix) + 1:
            message = f"{settings.bearer_header} is not '{prefix} <token>'"
            return _fail(Scheme.BEARER, Reason.MALFORMED_CREDENTIALS, message)
        value = value[len(prefix) + 1 :]
    if matches_any(value, (secret.value for secret in settings.shared_secrets)):
        return AuthResult(True, Scheme.BEARER)
    return _fail(Scheme.BEARER, Reason.SECRET_MISMATCH, f"{settings.bearer_header} token matches no VAPI_SECRET")


def _check_hmac(config: HmacSettings, headers: Mapping[str, str], body: bytes, now: float) -> AuthResult | None:
    received = headers.get(config.signature_header)
    if received is None:
        return None
    stamp, seconds = "", None
    if config.timestamp_header is not None:
        stamp = headers.get(config.timestamp_header, "")
        if not stamp:
            return _fail(Scheme.HMAC, Reason.MISSING_TIMESTAMP, f"no {config.timestamp_header} header")
        seconds = _parse_timestamp(stamp, config.timestamp_unit)
        if seconds is None:
            message = f"{config.timestamp_header} is not a Unix time in {config.timestamp_unit}"
            return _fail(Scheme.HMAC, Reason.MALFORMED_TIMESTAMP, message)
    signatures = _decode_signatures(received, config)
    if not signatures:
        message = f"{config.signature_header} holds no {config.prefix}<{config.encoding} {config.algorithm} digest>"
        return _fail(Scheme.HMAC, Reason.MALFORMED_SIGNATURE, message)
    payload = config.payload.chunks(timestamp=stamp.encode(), body=body)
    matched = _matching_digest(signatures, config, payload)
    if matched is None:
        message = f"{config.signature_header} matches no VAPI_HMAC_SECRET over {config.payload.text}"
        return _fail(Scheme.HMAC, Reason.SIGNATURE_MISMATCH, message)
    result = _check_skew(config, seconds, now)
    return replace(result, signature=matched) if result.ok else result


@functools.cache
def _keyed(key: bytes, algorithm: str) -> hmac.HMAC:
    """The HMAC state after the key, computed once per secret; each request copies it."""
    return hmac.new(key, digestmod=algorithm)


@functools.cache
def _digest_size(algorithm: str) -> int:
    return hashlib.new(algorithm).digest_size


def _digest(key: bytes, chunks: list[bytes], algorithm: str) -> bytes:
    mac = _keyed(key, algorithm).copy()
    for chunk in chunks:
        mac.update(chunk)
    return mac.digest()


def _matching_digest(signatures: list[bytes], config: HmacSettings, payload: list[bytes]) -> bytes | None:
    """The expected digest (of the first secret) that a received signature matches, or None."""
    expected = [_digest(s.value, payload, config.algorithm.value) for s in config.secrets]
    matched: bytes | None = None
    for digest in expected:  # every pair compared: the time does not tell which matched
        hit = False
        for signature in signatures:
            hit |= matches_any(signature, (digest,))
        if hit and matched is None:
            matched = digest
    return matched


def _check_skew(config: HmacSettings, seconds: float | None, now: float) -> AuthResult:
    if seconds is None:
        return AuthResult(True, Scheme.HMAC)
    skew = now - seconds
    if abs(skew) <= config.tolerance:
        return AuthResult(True, Scheme.HMAC, skew_seconds=round(skew, 3))
    skew = round(skew, 3)
    direction = "in the past" if skew > 0 else "in the future"
    message = f"{config.timestamp_header} is {abs(skew):g}s {direction} (tolerance {config.tolerance}s)"
    return _fail(Scheme.HMAC, Reason.STALE_TIMESTAMP, message, skew)


def _parse_timestamp(value: str, unit: TimestampUnit) -> float | None:
    if not _TIMESTAMP.fullmatch(value):
        return None
    number = float(value)
    is_ms = unit is TimestampUnit.MILLISECONDS or (unit is TimestampUnit.AUTO and number > _MS_THRESHOLD)
    return number / 1000 if is_ms else number


def _decode_signatures(received: str, config: HmacSettings) -> list[bytes]:
    """Every well-formed signature in the header; malformed candidates are skipped."""
    candidates = [c for c in _SEPARATORS.split(received) if c][:_MAX_SIGNATURES]
    size = _digest_size(config.algorithm.value)
    decoded = [_decode_one(c, config) for c in candidates]
    return [d for d in decoded if d is not None and len(d) == size]


def _decode_one(candidate: str, config: HmacSettings) -> bytes | None:
    if not candidate.startswith(config.prefix) or not candidate.isascii():
        return None
    text = candidate[len(config.prefix) :]
    try:
        if config.encoding is Encoding.HEX:
            return binascii.unhexlify(text)
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def _sign_hmac(config: HmacSettings, body: bytes, now: float) -> dict[str, str]:
    stamp = _format_timestamp(now, config.timestamp_unit) if config.timestamp_header else ""
    payload = config.payload.render(timestamp=stamp.encode(), body=body)
    digest = hmac.new(config.secrets[0].value, payload, config.algorithm.value).digest()
    encoded = digest.hex() if config.encoding is Encoding.HEX else base64.b64encode(digest).decode()
    headers = {config.signature_header: config.prefix + encoded}
    if config.timestamp_header:
        headers[config.timestamp_header] = stamp
    return headers


def _format_timestamp(now: float, unit: TimestampUnit) -> str:
    """Whole seconds for ``s`` and ``auto``, whole milliseconds for ``ms``."""
    return str(math.floor(now * 1000 if unit is TimestampUnit.MILLISECONDS else now))
