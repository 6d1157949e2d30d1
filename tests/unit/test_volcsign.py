"""Volcengine's request signature, checked against the worked example in Volcengine's
signature documentation (docs 6369/67270, "签名示例"; the same Authorization is quoted in
its common-parameters pages), and the fake server's independent verifier against the same
example."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest

from taskgate.providers import volcsign
from tests.fakes.jimeng_server import expected_signature

# The documentation's sample key pair: published, with no permissions. The access key id
# takes no part in the signature, so a placeholder stands for it here.
SAMPLE_SK = "TnpCak5XWXpZV1U0WkRaaE5ERmxaR0ZpTmpjeVkyUXlZek0wTWpJMU1qWQ=="
SAMPLE_URL = "https://iam.volcengineapi.com/?Action=ListUsers&Version=2018-01-01&Limit=10&Offset=0"
SAMPLE_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
SAMPLE_TIME = datetime(2020, 12, 30, 8, 18, 5, tzinfo=UTC)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SAMPLE_CANONICAL = (
    "GET\n/\nAction=ListUsers&Limit=10&Offset=0&Version=2018-01-01\n"
    f"content-type:{SAMPLE_TYPE}\nhost:iam.volcengineapi.com\n"
    f"x-content-sha256:{EMPTY_SHA256}\nx-date:20201230T081805Z\n\n"
    f"content-type;host;x-content-sha256;x-date\n{EMPTY_SHA256}"
)
SAMPLE_HASH = "3a4d4dee07c3308a52da01bc12d7a83c3705bfa543f51648f46de880bb2a7447"
SAMPLE_SIGNATURE = "28eeabbbd726b87002e0fe58ad8c1c768e619b06e2646f35b6ad7ed029a6d8a7"


def sample_headers() -> dict[str, str]:
    creds = volcsign.Credentials("AK-SAMPLE", SAMPLE_SK, "cn-north-1", "iam")
    return volcsign.sign(creds, "GET", SAMPLE_URL, b"", SAMPLE_TIME, SAMPLE_TYPE)


def test_the_documented_example_signs_to_the_documented_signature() -> None:
    headers = sample_headers()
    assert headers["Authorization"] == (
        "HMAC-SHA256 Credential=AK-SAMPLE/20201230/cn-north-1/iam/request, "
        f"SignedHeaders=content-type;host;x-content-sha256;x-date, Signature={SAMPLE_SIGNATURE}"
    )
    assert headers["X-Date"] == "20201230T081805Z"
    assert headers["X-Content-Sha256"] == EMPTY_SHA256
    assert headers["Host"] == "iam.volcengineapi.com"


def test_the_documented_canonical_request_and_string_to_sign() -> None:
    block, signed = volcsign.canonical_headers(
        {
            "X-Date": "20201230T081805Z",
            "Host": "iam.volcengineapi.com",
            "Content-Type": SAMPLE_TYPE,
            "X-Content-Sha256": EMPTY_SHA256,
        }
    )
    query = volcsign.canonical_query(
        [("Action", "ListUsers"), ("Version", "2018-01-01"), ("Limit", "10"), ("Offset", "0")]
    )
    canonical = volcsign.canonical_request("GET", "", query, block, signed, EMPTY_SHA256)
    assert canonical == SAMPLE_CANONICAL
    scope = volcsign.credential_scope("20201230", "cn-north-1", "iam")
    assert volcsign.string_to_sign("20201230T081805Z", scope, canonical) == (
        f"HMAC-SHA256\n20201230T081805Z\n20201230/cn-north-1/iam/request\n{SAMPLE_HASH}"
    )


def test_the_fake_servers_own_verifier_agrees_with_the_documented_example() -> None:
    headers = [
        ("content-type", SAMPLE_TYPE),
        ("host", "iam.volcengineapi.com"),
        ("x-content-sha256", EMPTY_SHA256),
        ("x-date", "20201230T081805Z"),
    ]
    query = [("Action", "ListUsers"), ("Version", "2018-01-01"), ("Limit", "10"), ("Offset", "0")]
    scope = "20201230/cn-north-1/iam/request"
    got = expected_signature(SAMPLE_SK, "GET", "/", query, headers, b"", headers[3][1], scope)
    assert got == SAMPLE_SIGNATURE


def test_the_signature_covers_the_body_the_secret_and_the_scope() -> None:
    creds = volcsign.Credentials("AK", "SK", "cn-north-1", "cv")
    url = "https://visual.volcengineapi.com/?Action=CVProcess&Version=2022-08-31"
    base = volcsign.sign(creds, "POST", url, b'{"a":1}', SAMPLE_TIME)
    assert base["X-Content-Sha256"] == hashlib.sha256(b'{"a":1}').hexdigest()
    variants = [
        volcsign.sign(creds, "POST", url, b'{"a":2}', SAMPLE_TIME),
        volcsign.sign(volcsign.Credentials("AK", "SK2"), "POST", url, b'{"a":1}', SAMPLE_TIME),
        volcsign.sign(
            volcsign.Credentials("AK", "SK", "cn-beijing"), "POST", url, b'{"a":1}', SAMPLE_TIME
        ),
        volcsign.sign(creds, "POST", url.replace("CVProcess", "X"), b'{"a":1}', SAMPLE_TIME),
    ]
    signatures = {h["Authorization"].rsplit("=", 1)[1] for h in [base, *variants]}
    assert len(signatures) == 5
    assert "SK" not in base["Authorization"].split("Signature=")[0].replace("AK", "")


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("b", "2"), ("a", "1"), ("c", "3")], "a=1&b=2&c=3"),
        ([("B", "1"), ("a", "2"), ("_", "3")], "B=1&_=3&a=2"),  # ASCII order: upper, _, lower
        ([("k", "z"), ("j", "0"), ("k", "a")], "j=0&k=z&k=a"),  # a repeated name keeps order
        ([("q", "a b")], "q=a%20b"),  # a space is %20, never +
        ([("q", "a+b/c=d&e")], "q=a%2Bb%2Fc%3Dd%26e"),
        ([("q", "-_.~")], "q=-_.~"),  # unreserved characters stay
        ([("q", "即梦")], "q=%E5%8D%B3%E6%A2%A6"),  # UTF-8, upper-case hex
        ([("empty", "")], "empty="),
        ([("na me", "v")], "na%20me=v"),  # names are encoded too
    ],
)
def test_canonical_query_sorts_and_encodes(pairs: list[tuple[str, str]], expected: str) -> None:
    assert volcsign.canonical_query(pairs) == expected


def test_the_query_of_a_url_is_decoded_before_it_is_encoded_again() -> None:
    creds = volcsign.Credentials("AK", "SK")
    plain = volcsign.sign(creds, "GET", "https://h/?b=x%20y&a=1", b"", SAMPLE_TIME)
    same = volcsign.sign(creds, "GET", "https://h/?a=1&b=x+y", b"", SAMPLE_TIME)
    assert plain["Authorization"] == same["Authorization"]


def test_canonical_headers_lower_case_sort_and_trim() -> None:
    block, signed = volcsign.canonical_headers({"X-Date": " 1 ", "Host": "h", "content-TYPE": "t"})
    assert block == "content-type:t\nhost:h\nx-date:1\n"
    assert signed == "content-type;host;x-date"


@pytest.mark.parametrize(
    ("scheme", "netloc", "host"),
    [
        ("https", "Visual.VolcengineAPI.com", "visual.volcengineapi.com"),
        ("https", "visual.volcengineapi.com:443", "visual.volcengineapi.com"),
        ("http", "127.0.0.1:80", "127.0.0.1"),
        ("http", "127.0.0.1:8443", "127.0.0.1:8443"),
        ("https", "[::1]:9000", "[::1]:9000"),
    ],
)
def test_host_header_drops_only_the_default_port(scheme: str, netloc: str, host: str) -> None:
    assert volcsign.host_header(scheme, netloc) == host


def test_x_date_is_utc() -> None:
    beijing = timezone(timedelta(hours=8))
    assert volcsign.format_date(datetime(2020, 12, 30, 16, 18, 5, tzinfo=beijing)) == (
        "20201230T081805Z"
    )


def test_credentials_come_from_one_secret_and_never_show_it() -> None:
    creds = volcsign.Credentials.from_secret(" AKLTabc : c2VjcmV0 ", "cn-north-1", "cv")
    assert (creds.access_key, creds.secret_key) == ("AKLTabc", "c2VjcmV0")
    assert "c2VjcmV0" not in repr(creds)
    for bad in ("no-colon-here", ":only-secret", "only-access:", ""):
        with pytest.raises(ValueError) as caught:
            volcsign.Credentials.from_secret(bad, "cn-north-1", "cv")
        assert "ACCESS_KEY:SECRET_KEY" in str(caught.value)
        assert not bad or bad.strip(":") not in str(caught.value)
