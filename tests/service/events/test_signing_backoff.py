"""Signing as Standard Webhooks specifies (checked with the `standardwebhooks` library) and the delivery
backoff: exponential, jittered, capped, given up past the maximum age (service/events/)."""

from __future__ import annotations

import base64
import datetime as dt
import random
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.events.backoff import DeliveryBackoff
from service.events.signing import Signer, WebhookSecretInvalid
from tests.receiver import SECRET

T0 = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def test_the_library_verifies_our_signature_and_refuses_a_changed_body() -> None:
    body = b'{"event_id":"evt_1","order_id":"P1"}'
    now = int(time.time())
    headers = Signer.from_secret(SECRET).headers("evt_1", now, body)
    assert headers["webhook-signature"] == Webhook(SECRET).sign(
        "evt_1", dt.datetime.fromtimestamp(now, dt.UTC), body.decode()
    )
    assert Webhook(SECRET).verify(body, headers) == {"event_id": "evt_1", "order_id": "P1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"P1", b"P2"), headers)
    other = "whsec_" + base64.b64encode(b"another-key-of-enough-bytes").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_an_unpadded_secret_is_accepted_and_the_key_never_shown() -> None:
    signer = Signer.from_secret(SECRET.rstrip("="))
    assert signer.signature("a", 1, b"x") == Signer.from_secret(SECRET).signature("a", 1, b"x")
    assert "asyncgate-test-key" not in repr(signer) and SECRET.removeprefix("whsec_") not in repr(signer)


@pytest.mark.parametrize("secret", ["", "whsec_", "key", "whsec_!!!!", "c2hvcnQ="])
def test_bad_secrets_are_refused(secret: str) -> None:
    with pytest.raises(WebhookSecretInvalid):
        Signer.from_secret(secret)


def test_a_short_key_signs_as_the_reference_library_verifies_but_is_weak() -> None:
    from standardwebhooks.webhooks import Webhook

    short = "whsec_" + base64.b64encode(b"short").decode()
    signer = Signer.from_secret(short)
    assert signer.weak and not Signer.from_secret(SECRET).weak
    body = b'{"event_id": "evt_1"}'
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(int(time.time()))}
    headers["webhook-signature"] = signer.signature("evt_1", int(headers["webhook-timestamp"]), body)
    Webhook(short).verify(body, headers)  # raises if it does not verify


def test_backoff_grows_jittered_within_its_cap() -> None:
    backoff = DeliveryBackoff(base_s=1, max_s=30, max_age_s=3600)
    rng = random.Random(0)
    for tries, cap in ((1, 1), (2, 2), (3, 4), (6, 30), (60, 30)):
        delays = [
            (backoff.next_try(tries=tries, since=T0, now=T0, rng=rng) - T0).total_seconds()  # type: ignore[operator]
            for _ in range(200)
        ]
        assert cap / 2 <= min(delays) and max(delays) <= cap
        assert len(set(delays)) > 100  # jittered


def test_backoff_gives_up_past_the_maximum_age_and_counts_from_since() -> None:
    backoff = DeliveryBackoff(base_s=1, max_s=10, max_age_s=60)
    rng = random.Random(0)
    assert backoff.next_try(tries=1, since=T0, now=T0 + dt.timedelta(seconds=59.6), rng=rng) is None
    assert backoff.next_try(tries=1, since=T0, now=T0 + dt.timedelta(seconds=30), rng=rng) is not None
    later = T0 + dt.timedelta(hours=5)
    assert backoff.next_try(tries=9, since=later, now=later, rng=rng) is not None  # a redeliver's fresh age


@pytest.mark.parametrize("values", [{"base_s": 0}, {"max_s": 0.5, "base_s": 1}, {"max_age_s": float("nan")}])
def test_backoff_refuses_nonsense(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        DeliveryBackoff(**values)
