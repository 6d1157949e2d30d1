"""File storage: blobs on a local folder or S3, catalogued in the store; ``from_url`` picks the
backend from a URL."""

from urllib.parse import parse_qs, urlsplit

from taskgate.files.base import Blobs
from taskgate.files.catalog import Files, clean_type, file_json
from taskgate.files.local import LocalBlobs
from taskgate.files.s3 import S3Blobs
from taskgate.files.signing import FileLinks

URL_FORMS = "file://PATH or s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&path_style=true|false]"
_STYLES = {"": None, "true": True, "1": True, "false": False, "0": False}


def from_url(url: str, key_id: str | None = None, secret: str | None = None) -> Blobs:
    """``file://PATH`` (relative paths from the working directory) or
    ``s3://BUCKET[/PREFIX]?endpoint=http://127.0.0.1:9000&region=us-east-1&path_style=true``
    (no endpoint: AWS; no path_style: botocore's choice, virtual hosts on AWS and paths
    elsewhere; ``key_id``/``secret`` unset: botocore's default credential chain)."""
    if url.startswith("file://"):
        return LocalBlobs(url.removeprefix("file://"))
    if url.startswith("s3://"):
        return _s3_from_url(url, key_id, secret)
    raise ValueError(f"unsupported files URL {url!r}: use {URL_FORMS}")


def _s3_from_url(url: str, key_id: str | None, secret: str | None) -> S3Blobs:
    parts = urlsplit(url)
    if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
        raise ValueError(f"bad files URL {url!r}: use {URL_FORMS} (credentials go in settings)")
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - {"endpoint", "region", "path_style"}
    if unknown:
        raise ValueError(f"bad files URL {url!r}: unknown options {sorted(unknown)}")
    style = query.get("path_style", "").lower()
    if style not in _STYLES:
        raise ValueError(f"bad files URL {url!r}: path_style must be true or false")
    prefix = parts.path.strip("/")
    return S3Blobs(
        parts.netloc,
        prefix + "/" if prefix else "",
        endpoint_url=query.get("endpoint") or None,
        region=query.get("region") or "us-east-1",
        path_style=_STYLES[style],
        key_id=key_id,
        secret=secret,
    )


__all__ = [
    "Blobs",
    "FileLinks",
    "Files",
    "LocalBlobs",
    "S3Blobs",
    "clean_type",
    "file_json",
    "from_url",
]
