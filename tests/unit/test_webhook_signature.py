"""Webhook signatures: what the sender puts in the headers, and what a receiver checks with
taskgate.client.verify_webhook (two implementations that must agree)."""

from __future__ import annotations

import hashlib
import hmac

from taskgate.client import verify_webhook
from taskgate.webhooks import signature, signed_headers

SECRET = "whsec_test-secret"
BODY = b'{"id":"evt_1_finished","type":"task.finished","data":{"status":"SUCCESS"}}'
NOW = 1_800_000_000.0


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1800000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_800_000_000, BODY) == "v1=" + expected


def test_signed_headers_carry_event_id_timestamp_and_signature() -> None:
    h = signed_headers("evt_1_finished", SECRET, BODY, NOW + 0.7)
    assert h["Content-Type"] == "application/json"
    assert h["X-Taskgate-Event-Id"] == "evt_1_finished"
    assert h["X-Taskgate-Timestamp"] == "1800000000"
    assert h["X-Taskgate-Signature"] == signature(SECRET, 1_800_000_000, BODY)
    assert SECRET not in "".join(h.values())


def test_a_receiver_verifies_a_genuine_request() -> None:
    h = signed_headers("evt_1_finished", SECRET, BODY, NOW)
    ts, sig = h["X-Taskgate-Timestamp"], h["X-Taskgate-Signature"]
    assert verify_webhook(SECRET, BODY, ts, sig, now=NOW + 10)
    # several signatures (e.g. while a receiver rolls secrets): any one that matches will do
    assert verify_webhook(SECRET, BODY, ts, f"v1=00ff, {sig}", now=NOW)


def test_tampering_a_wrong_secret_or_a_stale_timestamp_fail() -> None:
    h = signed_headers("evt_1_finished", SECRET, BODY, NOW)
    ts, sig = h["X-Taskgate-Timestamp"], h["X-Taskgate-Signature"]
    assert not verify_webhook(SECRET, BODY.replace(b"SUCCESS", b"FAILED"), ts, sig, now=NOW)
    assert not verify_webhook("whsec_other", BODY, ts, sig, now=NOW)
    assert not verify_webhook(SECRET, BODY, str(int(NOW) + 1), sig, now=NOW)  # ts is signed
    assert not verify_webhook(SECRET, BODY, ts, sig, now=NOW + 301)  # a replay, later
    assert verify_webhook(SECRET, BODY, ts, sig, now=NOW + 301, tolerance=600)
    assert not verify_webhook(SECRET, BODY, "yesterday", sig, now=NOW)
    assert not verify_webhook(SECRET, BODY, ts, sig.removeprefix("v1="), now=NOW)
