"""Webhook authentication: every scheme accepted, rejected and rotated; sign and verify round-trip."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers
from support.live import JSON, web_server

from ingest.web.auth import AuthResult, Reason, Scheme, sign, verify
from ingest.web.auth_settings import AuthConfigError, AuthMode, AuthSettings

NOW = 1_750_000_000.0
BODY = b'{"message":{"type":"status-update","status":"in-progress"}}'
SECRET = "s3cr3t-current"
OLD_SECRET = "s3cr3t-previous"
RETIRED_SECRET = "s3cr3t-retired"
VAPI_DOCS_ENV = {
    "VAPI_HMAC_SECRET": SECRET,
    "VAPI_HMAC_SIGNATURE_HEADER": "x-vapi-signature",
    "VAPI_HMAC_PAYLOAD": "{body}",
    "VAPI_HMAC_PREFIX": "sha256=",
}

# One entry per configuration the round-trip property walks.
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "shared-secret": {"VAPI_SECRET": SECRET},
    "hmac-default": {"VAPI_HMAC_SECRET": SECRET},
    "hmac-vapi-docs": VAPI_DOCS_ENV,
    "hmac-sha1": {"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_ALGORITHM": "sha1"},
    "hmac-sha512": {"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_ALGORITHM": "SHA512"},
    "hmac-base64": {"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_ENCODING": "base64"},
    "hmac-base64-secret": {"VAPI_HMAC_SECRET": "AAEC/w==", "VAPI_HMAC_SECRET_IS_BASE64": "true"},
    "hmac-ms": {"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_TIMESTAMP_UNIT": "ms"},
    "hmac-s": {"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_TIMESTAMP_UNIT": "s"},
    "hmac-rotated": {"VAPI_HMAC_SECRET": f"{SECRET}, {OLD_SECRET}"},
    "hmac-custom-template": {
        "VAPI_HMAC_SECRET": SECRET,
        "VAPI_HMAC_PAYLOAD": "v0:{timestamp}:{body}",
        "VAPI_HMAC_TIMESTAMP_HEADER": "X-Request-Timestamp",
    },
    "both": {"VAPI_SECRET": SECRET, "VAPI_HMAC_SECRET": SECRET},
    "insecure": {"INGEST_INSECURE": "true"},
}


def load(**env: str) -> AuthSettings:
    return AuthSettings.from_env(env)


def check(settings: AuthSettings, headers: dict[str, str], body: bytes = BODY, now: float = NOW) -> AuthResult:
    return verify(settings, Headers(headers), body, now=now)


def hex_hmac(secret: bytes, message: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret, message, algorithm).hexdigest()


# Accepted


def test_legacy_x_vapi_secret_accepted() -> None:
    """A matching X-Vapi-Secret header is accepted as the shared-secret scheme."""
    result = check(load(VAPI_SECRET=SECRET), {"X-Vapi-Secret": SECRET})
    assert result == AuthResult(True, Scheme.SHARED_SECRET)


def test_authorization_bearer_accepted() -> None:
    """A matching Authorization: Bearer token is accepted as the bearer scheme."""
    result = check(load(VAPI_SECRET=SECRET), {"Authorization": f"Bearer {SECRET}"})
    assert (result.ok, result.scheme) == (True, Scheme.BEARER)


def test_bearer_prefix_is_case_insensitive() -> None:
    """The bearer prefix matches in any case."""
    assert check(load(VAPI_SECRET=SECRET), {"authorization": f"bEaReR {SECRET}"}).ok


def test_custom_bearer_header_without_prefix_accepted() -> None:
    """A raw token in a custom header is accepted when the prefix is off."""
    settings = load(VAPI_SECRET=SECRET, VAPI_BEARER_HEADER="X-Api-Key", VAPI_BEARER_PREFIX="")
    result = check(settings, {"x-api-key": SECRET})
    assert (result.ok, result.scheme) == (True, Scheme.BEARER)


def test_hmac_default_template_matches_independent_computation() -> None:
    """The default template signs "<x-timestamp>.<raw body>" in hex in x-signature."""
    stamp = str(int(NOW))
    signature = hex_hmac(SECRET.encode(), stamp.encode() + b"." + BODY)
    result = check(load(VAPI_HMAC_SECRET=SECRET), {"x-signature": signature, "x-timestamp": stamp})
    assert (result.ok, result.scheme, result.skew_seconds) == (True, Scheme.HMAC, 0.0)


def test_vapi_docs_example_body_only_with_prefix_accepted() -> None:
    """Vapi's docs example (x-vapi-signature: sha256=<hex of body>, no timestamp) is accepted."""
    signature = "sha256=" + hex_hmac(SECRET.encode(), BODY)
    result = check(AuthSettings.from_env(VAPI_DOCS_ENV), {"X-Vapi-Signature": signature})
    assert (result.ok, result.scheme) == (True, Scheme.HMAC)


@pytest.mark.parametrize("algorithm", ["sha1", "sha512"])
def test_other_algorithms_accepted(algorithm: str) -> None:
    """sha1 and sha512 signatures are accepted when configured."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_HMAC_ALGORITHM=algorithm, VAPI_HMAC_PAYLOAD="{body}")
    assert check(settings, {"x-signature": hex_hmac(SECRET.encode(), BODY, algorithm)}).ok


def test_base64_encoding_accepted() -> None:
    """A base64-encoded signature is accepted when configured."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_HMAC_ENCODING="base64", VAPI_HMAC_PAYLOAD="{body}")
    signature = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
    assert check(settings, {"x-signature": signature}).ok


def test_base64_secret_is_decoded_before_use() -> None:
    """A base64 secret is decoded to its raw key bytes before signing."""
    key = bytes(range(32))
    env = {"VAPI_HMAC_SECRET": base64.b64encode(key).decode(), "VAPI_HMAC_SECRET_IS_BASE64": "1"}
    settings = AuthSettings.from_env(env | {"VAPI_HMAC_PAYLOAD": "{body}"})
    assert check(settings, {"x-signature": hex_hmac(key, BODY)}).ok


@pytest.mark.parametrize(("unit", "stamp"), [("s", "1750000000"), ("ms", "1750000000000")])
def test_timestamp_units_accepted(unit: str, stamp: str) -> None:
    """Timestamps in seconds and milliseconds are accepted under their unit and under auto."""
    signature = hex_hmac(SECRET.encode(), stamp.encode() + b"." + BODY)
    for configured in (unit, "auto"):
        settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_HMAC_TIMESTAMP_UNIT=configured)
        assert check(settings, {"x-signature": signature, "x-timestamp": stamp}).ok


def test_several_signatures_in_header_any_may_match() -> None:
    """A header listing several signatures is accepted when one of them matches."""
    settings = AuthSettings.from_env(VAPI_DOCS_ENV)
    good = "sha256=" + hex_hmac(SECRET.encode(), BODY)
    assert check(settings, {"x-vapi-signature": f"sha256={'0' * 64}, {good}"}).ok


def test_empty_x_vapi_secret_does_not_mask_a_valid_signature() -> None:
    """An empty X-Vapi-Secret (as Vapi sends next to HMAC) counts as absent."""
    settings = load(VAPI_SECRET=SECRET, VAPI_HMAC_SECRET=SECRET)
    assert check(settings, {"x-vapi-secret": "", **sign(settings, BODY, now=NOW)}).ok


def test_insecure_accepts_everything() -> None:
    """With INGEST_INSECURE and nothing configured, every request is accepted as insecure."""
    result = check(load(INGEST_INSECURE="true"), {})
    assert (result.ok, result.scheme) == (True, Scheme.INSECURE)


def test_header_lookup_is_case_insensitive_for_plain_dicts() -> None:
    """A plain dict with mixed-case names works as well as Starlette's Headers."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_HMAC_TIMESTAMP_HEADER="X-Timestamp")
    signed = {name.upper(): value for name, value in sign(settings, BODY, now=NOW).items()}
    assert verify(settings, signed, BODY, now=NOW).ok


# Rejected


def test_wrong_shared_secret_rejected() -> None:
    """A wrong X-Vapi-Secret is a secret mismatch."""
    result = check(load(VAPI_SECRET=SECRET), {"x-vapi-secret": "nope"})
    assert (result.ok, result.reason, result.scheme) == (False, Reason.SECRET_MISMATCH, Scheme.SHARED_SECRET)


def test_wrong_bearer_token_rejected() -> None:
    """A wrong bearer token is a secret mismatch."""
    result = check(load(VAPI_SECRET=SECRET), {"authorization": "Bearer nope"})
    assert (result.reason, result.scheme) == (Reason.SECRET_MISMATCH, Scheme.BEARER)


@pytest.mark.parametrize("value", [f"Basic {SECRET}", SECRET, f"Bearer  {SECRET}", f"Bearer{SECRET}"])
def test_wrong_bearer_prefix_rejected(value: str) -> None:
    """Anything but the prefix followed by one space is malformed."""
    result = check(load(VAPI_SECRET=SECRET), {"authorization": value})
    assert not result.ok
    assert result.reason in {Reason.MALFORMED_CREDENTIALS, Reason.SECRET_MISMATCH}


def test_missing_headers_rejected() -> None:
    """No credential header at all is missing_credentials, naming the expected headers (either mode)."""
    settings = load(VAPI_SECRET=SECRET, VAPI_HMAC_SECRET=SECRET, VAPI_AUTH_MODE="either")
    result = check(settings, {"content-type": "application/json"})
    assert result.reason is Reason.MISSING_CREDENTIALS
    assert "x-vapi-secret" in result.message
    assert "x-signature" in result.message


def test_missing_signature_when_hmac_is_the_only_scheme() -> None:
    """With HMAC alone, a request without the signature header is missing_signature."""
    result = check(load(VAPI_HMAC_SECRET=SECRET), {"x-vapi-secret": SECRET})
    assert result.reason is Reason.MISSING_SIGNATURE


def test_missing_timestamp_rejected() -> None:
    """A signature without its timestamp header is missing_timestamp."""
    settings = load(VAPI_HMAC_SECRET=SECRET)
    headers = sign(settings, BODY, now=NOW)
    del headers["x-timestamp"]
    assert check(settings, headers).reason is Reason.MISSING_TIMESTAMP


@pytest.mark.parametrize("stamp", ["soon", "-1750000000", "1.75e9", "17500000\u00b2", "1750000000."])
def test_malformed_timestamp_rejected(stamp: str) -> None:
    """A timestamp that is not plain digits is malformed, even if correctly signed."""
    settings = load(VAPI_HMAC_SECRET=SECRET)
    signature = hex_hmac(SECRET.encode(), stamp.encode() + b"." + BODY)
    assert check(settings, {"x-signature": signature, "x-timestamp": stamp}).reason is Reason.MALFORMED_TIMESTAMP


@pytest.mark.parametrize(("delta", "skew"), [(301.0, 301.0), (-301.0, -301.0), (86_400.5, 86_400.5)])
def test_stale_timestamp_rejected_both_directions(delta: float, skew: float) -> None:
    """A signed timestamp outside the tolerance, past or future, is stale with its skew."""
    settings = load(VAPI_HMAC_SECRET=SECRET)
    result = check(settings, sign(settings, BODY, now=NOW), now=NOW + delta)
    assert (result.reason, result.skew_seconds) == (Reason.STALE_TIMESTAMP, skew)
    assert ("past" if delta > 0 else "future") in result.message


def test_timestamp_at_tolerance_edge_accepted() -> None:
    """Exactly the tolerance away is still accepted."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_HMAC_TOLERANCE="60")
    assert check(settings, sign(settings, BODY, now=NOW), now=NOW - 60).ok


def test_ms_timestamp_read_as_seconds_is_stale() -> None:
    """Under unit s a millisecond timestamp is far in the future and rejected."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_HMAC_TIMESTAMP_UNIT="s")
    stamp = str(int(NOW * 1000))
    signature = hex_hmac(SECRET.encode(), stamp.encode() + b"." + BODY)
    assert check(settings, {"x-signature": signature, "x-timestamp": stamp}).reason is Reason.STALE_TIMESTAMP


@pytest.mark.parametrize("name", [name for name, env in CONFIGURATIONS.items() if "VAPI_HMAC_SECRET" in env])
def test_one_changed_body_byte_rejected(name: str) -> None:
    """Flipping one byte of the body breaks the signature."""
    settings = AuthSettings.from_env(CONFIGURATIONS[name])
    tampered = BODY[:10] + bytes([BODY[10] ^ 1]) + BODY[11:]
    result = check(settings, sign(settings, BODY, now=NOW), body=tampered)
    assert (result.ok, result.reason) == (False, Reason.SIGNATURE_MISMATCH)


def test_wrong_signature_prefix_rejected() -> None:
    """A correct digest under the wrong prefix is malformed."""
    signature = "sha1=" + hex_hmac(SECRET.encode(), BODY)
    result = check(AuthSettings.from_env(VAPI_DOCS_ENV), {"x-vapi-signature": signature})
    assert result.reason is Reason.MALFORMED_SIGNATURE


@pytest.mark.parametrize("cut", [1, 2, 32])
def test_truncated_signature_rejected(cut: int) -> None:
    """A signature with characters cut off is malformed."""
    signature = "sha256=" + hex_hmac(SECRET.encode(), BODY)[:-cut]
    result = check(AuthSettings.from_env(VAPI_DOCS_ENV), {"x-vapi-signature": signature})
    assert result.reason is Reason.MALFORMED_SIGNATURE


def test_hmac_failure_reported_before_shared_secret_failure() -> None:
    """When several present schemes fail, the HMAC reason is reported."""
    settings = load(VAPI_SECRET=SECRET, VAPI_HMAC_SECRET=SECRET)
    headers = {"x-vapi-secret": "nope", **sign(settings, BODY, now=NOW)}
    assert check(settings, headers, body=b"{}").reason is Reason.SIGNATURE_MISMATCH


def test_result_log_fields_are_plain_json() -> None:
    """log_fields gives plain strings and numbers for the delivery's log line, none named like a LogRecord field."""
    settings = load(VAPI_HMAC_SECRET=SECRET)
    result = check(settings, sign(settings, BODY, now=NOW), now=NOW - 400)
    assert result.log_fields() == {
        "scheme": "hmac",
        "reason": "stale_timestamp",
        "auth_detail": "x-timestamp is 400s in the future (tolerance 300s)",
        "skew_seconds": -400.0,
    }


def test_unconfigured_settings_reject_without_insecure() -> None:
    """Settings built without any scheme and without insecure reject every request."""
    settings = AuthSettings((), "authorization", "Bearer", None, insecure=False)
    assert not check(settings, {"x-vapi-secret": SECRET}).ok


def test_messages_never_contain_secrets_or_signatures() -> None:
    """Failure messages name headers but never echo secrets or received values."""
    settings = load(VAPI_SECRET=SECRET, VAPI_HMAC_SECRET=SECRET)
    signed = sign(settings, BODY, now=NOW)
    for headers in ({"x-vapi-secret": SECRET[:-1]}, signed, {"authorization": f"Token {SECRET}"}):
        text = repr(check(settings, headers, body=b"x").log_fields())
        assert SECRET[:6] not in text
        assert signed["x-signature"][:16] not in text


# Rotation


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_rotated_shared_secrets_either_accepted(secret: str) -> None:
    """Both comma-separated shared secrets are accepted."""
    settings = load(VAPI_SECRET=f"{SECRET},{OLD_SECRET}")
    assert check(settings, {"x-vapi-secret": secret}).ok
    assert check(settings, {"authorization": f"Bearer {secret}"}).ok


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET])
def test_rotated_hmac_secrets_either_accepted(secret: str) -> None:
    """A signature by either comma-separated HMAC secret is accepted."""
    settings = load(VAPI_HMAC_SECRET=f"{SECRET},{OLD_SECRET}")
    assert check(settings, sign(load(VAPI_HMAC_SECRET=secret), BODY, now=NOW)).ok


def test_retired_secrets_refused() -> None:
    """A secret removed from the list is refused by both schemes (either mode)."""
    both = {"VAPI_SECRET": f"{SECRET},{OLD_SECRET}", "VAPI_HMAC_SECRET": f"{SECRET},{OLD_SECRET}"}
    settings = load(**both, VAPI_AUTH_MODE="either")
    assert check(settings, {"x-vapi-secret": RETIRED_SECRET}).reason is Reason.SECRET_MISMATCH
    retired = sign(load(VAPI_HMAC_SECRET=RETIRED_SECRET), BODY, now=NOW)
    assert check(settings, retired).reason is Reason.SIGNATURE_MISMATCH


def test_sign_uses_the_first_secret() -> None:
    """sign uses the first listed (current) secret."""
    signed = sign(load(VAPI_HMAC_SECRET=f"{SECRET},{OLD_SECRET}"), BODY, now=NOW)
    assert signed == sign(load(VAPI_HMAC_SECRET=SECRET), BODY, now=NOW)


# Round trip


@given(
    name=st.sampled_from(list(CONFIGURATIONS)),
    body=st.one_of(st.binary(max_size=2048), st.just(b"\x00{body}\xff{timestamp}\xfe}")),
    now=st.floats(min_value=0, max_value=4e9),
)
def test_sign_then_verify_round_trips(name: str, body: bytes, now: float) -> None:
    """Whatever the configuration and body bytes, verify accepts what sign produced."""
    settings = AuthSettings.from_env(CONFIGURATIONS[name])
    assert verify(settings, sign(settings, body, now=now), body, now=now).ok


# Settings


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_ALGORITHM": "md5"}, "VAPI_HMAC_ALGORITHM"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_ENCODING": "base32"}, "VAPI_HMAC_ENCODING"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_TIMESTAMP_UNIT": "us"}, "VAPI_HMAC_TIMESTAMP_UNIT"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_TOLERANCE": "5m"}, "VAPI_HMAC_TOLERANCE"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_TOLERANCE": "0"}, "VAPI_HMAC_TOLERANCE"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_TIMESTAMP_HEADER": ""}, "VAPI_HMAC_TIMESTAMP_HEADER"),
        (VAPI_DOCS_ENV | {"VAPI_HMAC_TIMESTAMP_HEADER": "x-timestamp"}, "VAPI_HMAC_TIMESTAMP_HEADER"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_PAYLOAD": "{method} {url}.{body}"}, "VAPI_HMAC_PAYLOAD"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_PAYLOAD": "{timestamp}"}, "VAPI_HMAC_PAYLOAD"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_PAYLOAD": "{body}}"}, "VAPI_HMAC_PAYLOAD"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_SIGNATURE_HEADER": "x sig:"}, "VAPI_HMAC_SIGNATURE_HEADER"),
        ({"VAPI_HMAC_SECRET": "not base64!", "VAPI_HMAC_SECRET_IS_BASE64": "yes"}, "VAPI_HMAC_SECRET"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_HMAC_SECRET_IS_BASE64": "maybe"}, "VAPI_HMAC_SECRET_IS_BASE64"),
        ({"VAPI_SECRET": "tab\tsecret"}, "VAPI_SECRET"),
        ({"VAPI_SECRET": SECRET, "VAPI_BEARER_HEADER": "Auth orization"}, "VAPI_BEARER_HEADER"),
        ({"VAPI_SECRET": SECRET, "INGEST_INSECURE": "true"}, "INGEST_INSECURE"),
        ({"INGEST_INSECURE": "false"}, "VAPI_SECRET"),
        ({}, "VAPI_SECRET"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    """Each invalid environment raises AuthConfigError naming the offending variable."""
    with pytest.raises(AuthConfigError, match=variable) as caught:
        AuthSettings.from_env(env)
    assert caught.value.variable == variable


def test_settings_defaults() -> None:
    """Unset variables take the documented defaults."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_SECRET=SECRET)
    assert (settings.bearer_header, settings.bearer_prefix, settings.insecure) == ("authorization", "Bearer", False)
    assert settings.hmac is not None
    assert (settings.hmac.algorithm, settings.hmac.encoding, settings.hmac.timestamp_unit) == ("sha256", "hex", "auto")
    assert (settings.hmac.signature_header, settings.hmac.timestamp_header) == ("x-signature", "x-timestamp")
    assert (settings.hmac.payload.text, settings.hmac.prefix) == ("{timestamp}.{body}", "")
    assert settings.hmac.tolerance == 300


def test_configured_property() -> None:
    """configured is true with any secret and false in insecure mode."""
    assert load(VAPI_SECRET=SECRET).configured
    assert load(VAPI_HMAC_SECRET=SECRET).configured
    assert not load(INGEST_INSECURE="on").configured


def test_repr_never_shows_secrets() -> None:
    """The settings repr hides every secret value."""
    settings = load(VAPI_SECRET=f"{SECRET},{OLD_SECRET}", VAPI_HMAC_SECRET=RETIRED_SECRET)
    text = repr(settings)
    assert "Secret('**********')" in text
    assert all(secret not in text for secret in (SECRET, OLD_SECRET, RETIRED_SECRET))


# Modes (VAPI_AUTH_MODE)


def test_mode_defaults_follow_what_is_configured() -> None:
    """hmac with an HMAC secret (whether or not VAPI_SECRET is set), secret with only VAPI_SECRET."""
    assert load(VAPI_HMAC_SECRET=SECRET).in_force is AuthMode.HMAC
    assert load(VAPI_HMAC_SECRET=SECRET, VAPI_SECRET=SECRET).in_force is AuthMode.HMAC
    assert load(VAPI_SECRET=SECRET).in_force is AuthMode.SECRET
    assert load(INGEST_INSECURE="true").in_force is AuthMode.INSECURE
    assert load(VAPI_HMAC_SECRET=SECRET, VAPI_SECRET=SECRET, VAPI_AUTH_MODE="Either").in_force is AuthMode.EITHER


def test_hmac_mode_requires_the_signature_when_both_are_set() -> None:
    """With both secrets set, a right shared secret alone or next to a wrong signature is refused."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_SECRET=SECRET)
    assert check(settings, {"x-vapi-secret": SECRET}).reason is Reason.MISSING_SIGNATURE
    assert check(settings, {"authorization": f"Bearer {SECRET}"}).reason is Reason.MISSING_SIGNATURE
    forged = sign(load(VAPI_HMAC_SECRET=RETIRED_SECRET), BODY, now=NOW)
    assert check(settings, {"x-vapi-secret": SECRET, **forged}).reason is Reason.SIGNATURE_MISMATCH
    assert check(settings, {"x-vapi-secret": SECRET, **sign(settings, BODY, now=NOW)}).scheme is Scheme.HMAC


def test_either_mode_accepts_both() -> None:
    """VAPI_AUTH_MODE=either accepts a valid signature or a valid shared secret."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_SECRET=SECRET, VAPI_AUTH_MODE="either")
    assert check(settings, {"x-vapi-secret": SECRET}).scheme is Scheme.SHARED_SECRET
    assert check(settings, sign(settings, BODY, now=NOW)).scheme is Scheme.HMAC


def test_secret_mode_ignores_signatures() -> None:
    """VAPI_AUTH_MODE=secret with both set checks the shared secret only."""
    settings = load(VAPI_HMAC_SECRET=SECRET, VAPI_SECRET=SECRET, VAPI_AUTH_MODE="secret")
    assert check(settings, {"x-vapi-secret": SECRET}).ok
    assert not check(settings, sign(settings, BODY, now=NOW)).ok


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"VAPI_SECRET": SECRET, "VAPI_AUTH_MODE": "hmac"}, "needs VAPI_HMAC_SECRET"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_AUTH_MODE": "secret"}, "needs VAPI_SECRET"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_AUTH_MODE": "either"}, "needs VAPI_SECRET"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_AUTH_MODE": "any"}, "expected one of"),
        ({"VAPI_HMAC_SECRET": SECRET, "VAPI_AUTH_MODE": "insecure"}, "expected hmac, secret or either"),
        ({"INGEST_INSECURE": "true", "VAPI_AUTH_MODE": "hmac"}, "INGEST_INSECURE"),
    ],
)
def test_bad_modes_are_refused(env: dict[str, str], problem: str) -> None:
    """A mode the configured secrets cannot serve stops the process, naming VAPI_AUTH_MODE."""
    with pytest.raises(AuthConfigError, match=problem) as raised:
        AuthSettings.from_env(env)
    assert raised.value.variable == "VAPI_AUTH_MODE"


def test_accepted_signature_is_kept_for_the_replay_memory() -> None:
    """An accepted HMAC result carries the matching digest (not logged); other schemes carry none."""
    settings = load(VAPI_HMAC_SECRET=f"{SECRET},{OLD_SECRET}", VAPI_SECRET=SECRET, VAPI_AUTH_MODE="either")
    current = check(settings, sign(settings, BODY, now=NOW))
    assert current.signature == hmac.new(SECRET.encode(), f"{int(NOW)}.".encode() + BODY, "sha256").digest()
    padded = sign(settings, BODY, now=NOW)
    padded["x-signature"] = f"{'0' * 64}, {padded['x-signature'].upper()}"
    assert check(settings, padded).signature == current.signature  # another spelling is the same request
    assert "signature" not in current.log_fields()
    assert check(settings, {"x-vapi-secret": SECRET}).signature is None


# Against the real web process


def _live_env(db_url: str, redis_url: str, namespace: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "INGEST_REDIS_NAMESPACE": namespace,
        "INGEST_DATA_DIR": str(tmp_path),
        "VAPI_SECRET": SECRET,
        "VAPI_HMAC_SECRET": OLD_SECRET,
        **extra,
    }


def _post(base: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base}/webhooks/vapi", content=BODY, headers={**JSON, **headers}, timeout=10)


@pytest.mark.slow
def test_live_hmac_is_required_when_configured(
    db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    """`ingest web` with both secrets: a shared secret alone or beside a wrong signature is a 401; boot says hmac."""
    log_path = tmp_path / "web.log"
    hmac_only = load(VAPI_HMAC_SECRET=OLD_SECRET)
    with web_server(_live_env(db_url, redis_server_url, redis_namespace, tmp_path), log_path=str(log_path)) as base:
        alone = _post(base, {"x-vapi-secret": SECRET})
        forged = sign(load(VAPI_HMAC_SECRET=RETIRED_SECRET), BODY, now=time.time())
        wrong_signature = _post(base, {"x-vapi-secret": SECRET, **forged})
        right = _post(base, sign(hmac_only, BODY, now=time.time()))
    assert (alone.status_code, alone.json()["reason"]) == (401, "missing_signature")
    assert (wrong_signature.status_code, wrong_signature.json()["reason"]) == (401, "signature_mismatch")
    assert right.status_code == 200
    lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.startswith(b"{")]
    modes = [line for line in lines if line["msg"] == "webhook authentication"]
    assert [(line["auth_mode"], line["ignored"]) for line in modes] == [("hmac", ["VAPI_SECRET"])]
    text = log_path.read_text()
    assert SECRET not in text
    assert OLD_SECRET not in text


@pytest.mark.slow
def test_live_either_mode_accepts_both(
    db_url: str, redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    """`ingest web` with VAPI_AUTH_MODE=either accepts a shared secret alone and a valid signature; boot says so."""
    log_path = tmp_path / "web.log"
    env = _live_env(db_url, redis_server_url, redis_namespace, tmp_path, VAPI_AUTH_MODE="either")
    with web_server(env, log_path=str(log_path)) as base:
        alone = _post(base, {"x-vapi-secret": SECRET})
        signed = _post(base, sign(load(VAPI_HMAC_SECRET=OLD_SECRET), BODY, now=time.time()))
    assert (alone.status_code, signed.status_code) == (200, 200)
    lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.startswith(b"{")]
    assert [line["auth_mode"] for line in lines if line["msg"] == "webhook authentication"] == ["either"]
