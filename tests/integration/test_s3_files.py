"""S3 file storage against a real S3-protocol server on loopback: moto's server, started as a
subprocess with IAM authentication on, so wrong credentials are refused as AWS would."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from taskgate.files import S3Blobs, from_url
from tests.fakes.moto_s3 import BUCKET, MotoS3, free_port, moto_s3

REFUSED = r"SignatureDoesNotMatch|InvalidAccessKeyId"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with moto_s3(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def s3_blobs(moto: MotoS3, prefix: str = "", **options: Any) -> S3Blobs:
    options = {"key_id": moto.key_id, "secret": moto.secret, "path_style": True, **options}
    return S3Blobs(BUCKET, prefix, endpoint_url=options.pop("endpoint_url", moto.url), **options)


@pytest.fixture
async def blobs(moto: MotoS3) -> AsyncIterator[S3Blobs]:
    b = s3_blobs(moto, "t/")
    try:
        yield b
    finally:
        await b.close()


async def test_round_trip_of_small_large_and_empty_blobs(blobs: S3Blobs) -> None:
    big = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    for key, data in [("small1", b"hello"), ("big1", big), ("empty1", b"")]:
        await blobs.put(key, data)
        assert await blobs.get(key) == data
    await blobs.put("small1", b"again")  # overwriting is allowed: outputs are retried
    assert await blobs.get("small1") == b"again"


async def test_a_missing_key_is_file_not_found(blobs: S3Blobs) -> None:
    with pytest.raises(FileNotFoundError, match="t/nothere"):
        await blobs.get("nothere")


async def test_objects_land_under_the_prefix(moto: MotoS3) -> None:
    a, b = s3_blobs(moto, "tenant-a/"), s3_blobs(moto, "tenant-b/")
    try:
        await a.put("same1", b"a")
        await b.put("same1", b"b")
        assert (await a.get("same1"), await b.get("same1")) == (b"a", b"b")
    finally:
        await a.close()
        await b.close()
    assert moto.keys("tenant-") == ["tenant-a/same1", "tenant-b/same1"]


async def test_path_style_puts_the_bucket_in_the_path(moto: MotoS3) -> None:
    urls: list[str] = []

    class Sent(Exception):
        pass

    def capture(request: Any, **_: Any) -> None:
        urls.append(request.url)
        raise Sent  # the virtual-host name does not resolve here; the URL is what we check

    host = f"http://localhost:{moto.port}"
    for path_style in (True, False, None):
        b = s3_blobs(moto, "p/", endpoint_url=host, path_style=path_style)
        try:
            (await b.client()).meta.events.register("before-send.s3.PutObject", capture)
            with pytest.raises(Sent):
                await b.put("style1", b"x")
        finally:
            await b.close()
    assert urls == [
        f"http://localhost:{moto.port}/{BUCKET}/p/style1",
        f"http://{BUCKET}.localhost:{moto.port}/p/style1",
        f"http://localhost:{moto.port}/{BUCKET}/p/style1",  # botocore's choice off AWS
    ]


async def test_a_files_url_opens_the_bucket(moto: MotoS3) -> None:
    url = f"s3://{BUCKET}/from/url?endpoint={moto.url}&region=us-east-1&path_style=true"
    blobs = from_url(url, key_id=moto.key_id, secret=moto.secret)
    try:
        await blobs.put("viaurl1", b"data")
        assert await blobs.get("viaurl1") == b"data"
    finally:
        await blobs.close()
    assert moto.keys("from/") == ["from/url/viaurl1"]


async def test_delete_many_removes_those_keys_only(blobs: S3Blobs, monkeypatch: Any) -> None:
    monkeypatch.setattr("taskgate.files.s3.DELETE_MANY", 2)  # several requests
    for key in ("many1", "many2", "many3", "many4"):
        await blobs.put(key, b"x")
    await blobs.delete_many(["many1", "many3", "many4", "missing1"])
    assert await blobs.get("many2") == b"x"
    for key in ("many1", "many3", "many4"):
        with pytest.raises(FileNotFoundError):
            await blobs.get(key)


async def test_the_client_reopens_after_close(blobs: S3Blobs) -> None:
    await blobs.put("reopen1", b"1")
    await blobs.close()
    assert await blobs.get("reopen1") == b"1"


@pytest.mark.parametrize("key_id", ["valid", "AKIAUNKNOWN000000000"])
async def test_wrong_credentials_are_an_os_error(moto: MotoS3, key_id: str) -> None:
    b = s3_blobs(moto, key_id=moto.key_id if key_id == "valid" else key_id, secret="wrong")
    try:
        with pytest.raises(OSError, match=REFUSED):
            await b.put("denied1", b"x")
        with pytest.raises(OSError, match=REFUSED) as err:
            await b.get("denied1")
        assert not isinstance(err.value, FileNotFoundError)
    finally:
        await b.close()


async def test_an_unreachable_endpoint_is_an_os_error_soon(moto: MotoS3) -> None:
    fast: dict[str, Any] = {"connect_timeout": 0.5, "read_timeout": 0.5, "max_attempts": 1}
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        closed, mute = free_port(), silent.getsockname()[1]
        for port in (closed, mute):
            b = s3_blobs(moto, endpoint_url=f"http://127.0.0.1:{port}", **fast)
            started = time.monotonic()
            try:
                with pytest.raises(OSError, match="S3 get"):
                    await b.get("any1")
            finally:
                await b.close()
            assert time.monotonic() - started < 3
