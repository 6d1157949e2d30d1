from taskgate.files.base import Blobs
from taskgate.files.catalog import Files, file_json
from taskgate.files.local import LocalBlobs


def from_url(url: str, key_id: str | None = None, secret: str | None = None) -> Blobs:
    """``file://PATH`` (relative paths from the working directory)."""
    if url.startswith("file://"):
        return LocalBlobs(url.removeprefix("file://"))
    raise ValueError(f"unsupported files URL {url!r}: use file://PATH")


__all__ = ["Blobs", "Files", "LocalBlobs", "file_json", "from_url"]
