"""Volcengine's request signature (``HMAC-SHA256``, built like AWS Signature V4), for the
providers that call Volcengine OpenAPI services (Jimeng on ``visual.volcengineapi.com``).

Written from Volcengine's public description of the algorithm ("签名机制"); the unit tests
check it against the worked example in that documentation. In short::

    CanonicalRequest = Method \\n Path \\n CanonicalQuery \\n CanonicalHeaders \\n
                       SignedHeaders \\n hex(sha256(body))
    StringToSign     = "HMAC-SHA256" \\n X-Date \\n Scope \\n hex(sha256(CanonicalRequest))
    Scope            = YYYYMMDD/region/service/request
    kSigning         = HMAC(HMAC(HMAC(HMAC(secret_key, YYYYMMDD), region), service), "request")
    Authorization    = "HMAC-SHA256 Credential=AK/Scope, SignedHeaders=..., Signature=hex"

Unlike AWS, the secret key is used as it is (no ``AWS4`` prefix) and the scope ends in
``request``. Query names and values are percent-encoded as RFC 3986 says (only
``A-Z a-z 0-9 - _ . ~`` stay as they are; a space is ``%20``) and sorted by name, values of a
repeated name keeping their order. The server rejects a request whose ``X-Date`` is more than
15 minutes off its clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

ALGORITHM = "HMAC-SHA256"
UNRESERVED = "-_.~"  # besides letters and digits, what RFC 3986 leaves unencoded
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair and the region and service it signs for."""

    access_key: str
    secret_key: str = field(repr=False)
    region: str = "cn-north-1"
    service: str = "cv"

    @classmethod
    def from_secret(cls, secret: str, region: str, service: str) -> Credentials:
        """``ACCESS_KEY:SECRET_KEY`` (one value, so one ``secret_env``) as credentials.
        The error never quotes the value: it is a secret."""
        access_key, sep, secret_key = secret.partition(":")
        if not sep or not access_key.strip() or not secret_key.strip():
            raise ValueError("the secret must be ACCESS_KEY:SECRET_KEY (two parts, one colon)")
        return cls(access_key.strip(), secret_key.strip(), region, service)


def sign(
    creds: Credentials,
    method: str,
    url: str,
    body: bytes,
    now: datetime,
    content_type: str = "application/json",
) -> dict[str, str]:
    """The headers that sign this request: Content-Type, Host, X-Content-Sha256, X-Date
    and Authorization. Send them as they are (the Host value included)."""
    parts = urlsplit(url)
    x_date = format_date(now)
    headers = {
        "Content-Type": content_type,
        "Host": host_header(parts.scheme, parts.netloc),
        "X-Content-Sha256": sha256_hex(body),
        "X-Date": x_date,
    }
    canonical, signed = canonical_headers(headers)
    request = canonical_request(
        method,
        parts.path,
        canonical_query(parse_qsl(parts.query, keep_blank_values=True)),
        canonical,
        signed,
        headers["X-Content-Sha256"],
    )
    scope = credential_scope(x_date[:8], creds.region, creds.service)
    key = signing_key(creds.secret_key, x_date[:8], creds.region, creds.service)
    signature = hmac_sha256(key, string_to_sign(x_date, scope, request)).hex()
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return headers


def format_date(now: datetime) -> str:
    """``X-Date``: UTC, to the second, ``YYYYMMDD'T'HHMMSS'Z'``."""
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def host_header(scheme: str, netloc: str) -> str:
    """The Host value as signed: lower case, without a port that is the scheme's default."""
    host = netloc.rpartition("@")[2].lower()
    name, sep, port = host.rpartition(":")
    if sep and "]" not in port and port.isdigit() and int(port) == DEFAULT_PORTS.get(scheme):
        return name
    return host


def encode(text: str) -> str:
    return quote(text, safe=UNRESERVED)


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Encoded ``name=value`` pairs sorted by name (a stable sort: a repeated name keeps
    its values in request order), joined with ``&``."""
    encoded = [(encode(name), encode(value)) for name, value in pairs]
    encoded.sort(key=lambda pair: pair[0])
    return "&".join(f"{name}={value}" for name, value in encoded)


def canonical_path(path: str) -> str:
    return quote(path, safe="/" + UNRESERVED) or "/"


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """The canonical header block (``name:value\\n`` each, lower-cased names sorted, values
    trimmed) and the matching ``SignedHeaders`` list."""
    entries = sorted((name.strip().lower(), value.strip()) for name, value in headers.items())
    block = "".join(f"{name}:{value}\n" for name, value in entries)
    return block, ";".join(name for name, _ in entries)


def canonical_request(
    method: str, path: str, query: str, headers: str, signed: str, body_hash: str
) -> str:
    return "\n".join([method.upper(), canonical_path(path), query, headers, signed, body_hash])


def credential_scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/request"


def string_to_sign(x_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, x_date, scope, sha256_hex(canonical.encode())])


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = secret_key.encode()
    for part in (date, region, service, "request"):
        key = hmac_sha256(key, part)
    return key


def hmac_sha256(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
