"""Webhook deliveries are checked with SuperOffice's documented signature before they count."""

from __future__ import annotations

import base64
import hashlib
import hmac

from sync.crm.superoffice.webhooks import check_delivery


def signed(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_a_signed_event_counts_a_test_event_is_only_answered_and_a_forgery_is_refused() -> None:
    body = b'{"Event": "activity.changed", "PrimaryKey": 1001}'
    delivery = check_delivery("s3cret", body, {"x-superoffice-signature": signed("s3cret", body)})
    assert delivery is not None and not delivery.test and delivery.event == "activity.changed"
    test = b'{"Event": "test"}'
    hello = check_delivery(
        "s3cret", test, {"x-superoffice-signature": signed("s3cret", test), "x-hook-test": "true"}
    )
    assert hello is not None and hello.test
    assert (
        check_delivery("s3cret", body, {"x-superoffice-signature": signed("other", body)}) is None
    )
    assert check_delivery("s3cret", body, {}) is None
