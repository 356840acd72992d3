"""memq.webhooks: what a receiver checks. A signed delivery verifies; a changed body, another
secret, a stale or future timestamp, or a missing header does not."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from memq.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE_S,
    InvalidWebhook,
    delivery_headers,
    sign,
    verify,
)

SECRET = "whsec_test"
BODY = b'{"id": "j1", "status": "succeeded"}'
NOW = 1_700_000_000


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == expected
    headers = delivery_headers("d1", [SECRET], BODY, NOW)
    assert headers[SIGNATURE_HEADER] == f"v1={expected}"
    assert headers[TIMESTAMP_HEADER] == str(NOW)
    assert headers[ID_HEADER] == "d1"


def test_a_signed_delivery_verifies_and_names_its_delivery_id() -> None:
    headers = delivery_headers("d1", [SECRET], BODY, NOW)
    assert verify(SECRET, headers, BODY, now=NOW) == "d1"
    lowered = {k.lower(): v for k, v in headers.items()}  # frameworks lower-case header names
    assert verify(SECRET, lowered, BODY, now=NOW + TOLERANCE_S) == "d1"


@pytest.mark.parametrize(
    ("secret", "body", "now", "message"),
    [
        ("whsec_other", BODY, NOW, "no v1 signature"),
        (SECRET, BODY.replace(b"succeeded", b"failed"), NOW, "no v1 signature"),
        (SECRET, BODY, NOW + TOLERANCE_S + 1, "s old"),
        (SECRET, BODY, NOW - TOLERANCE_S - 1, "s ahead"),
    ],
    ids=["other secret", "changed body", "replayed late", "from the future"],
)
def test_what_does_not_verify(secret: str, body: bytes, now: int, message: str) -> None:
    headers = delivery_headers("d1", [SECRET], BODY, NOW)
    with pytest.raises(InvalidWebhook, match=message):
        verify(secret, headers, body, now=now)


@pytest.mark.parametrize("missing", [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER])
def test_a_missing_header_does_not_verify(missing: str) -> None:
    headers = delivery_headers("d1", [SECRET], BODY, NOW)
    del headers[missing]
    with pytest.raises(InvalidWebhook, match="lacks"):
        verify(SECRET, headers, BODY, now=NOW)


def test_a_timestamp_that_is_not_a_number_does_not_verify() -> None:
    headers = delivery_headers("d1", [SECRET], BODY, NOW) | {TIMESTAMP_HEADER: "yesterday"}
    with pytest.raises(InvalidWebhook, match="not unix seconds"):
        verify(SECRET, headers, BODY, now=NOW)


def test_during_a_rotation_either_secret_verifies() -> None:
    headers = delivery_headers("d1", ["whsec_new", "whsec_old"], BODY, NOW)
    assert headers[SIGNATURE_HEADER].count("v1=") == 2
    assert verify("whsec_new", headers, BODY, now=NOW) == "d1"
    assert verify("whsec_old", headers, BODY, now=NOW) == "d1"
    assert verify(["whsec_unrelated", "whsec_old"], headers, BODY, now=NOW) == "d1"
    with pytest.raises(InvalidWebhook):
        verify("whsec_unrelated", headers, BODY, now=NOW)


def test_a_signature_of_another_version_is_ignored() -> None:
    headers = delivery_headers("d1", [SECRET], BODY, NOW)
    headers[SIGNATURE_HEADER] = headers[SIGNATURE_HEADER].replace("v1=", "v0=")
    with pytest.raises(InvalidWebhook):
        verify(SECRET, headers, BODY, now=NOW)
