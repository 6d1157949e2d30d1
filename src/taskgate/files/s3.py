"""Blobs in S3-compatible object storage (AWS S3, MinIO, Ceph, ...): ``BUCKET/PREFIXkey``.

Library: aiobotocore, botocore's own signing, endpoints and error model run natively on
asyncio over aiohttp (already taskgate's outbound HTTP client), so no thread hop per call
as boto3 would need. It is an optional extra: ``pip install 'taskgate[s3]'``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from taskgate.files.base import Blobs

EXTRA_HINT = "S3 file storage needs: pip install 'taskgate[s3]'"
MISSING = {"NoSuchKey", "404", "NotFound"}
DELETE_MANY = 1000  # keys per DeleteObjects request
STYLES = {True: "path", False: "virtual", None: "auto"}


class S3Blobs(Blobs):
    """``key_id``/``secret`` unset: botocore's default chain (env, profile, instance role);
    the key needs s3:ListBucket too, or a missing file is a 403 (OSError), not a 404.
    ``endpoint_url`` unset: AWS. ``path_style`` True: ``endpoint/bucket/key``; False:
    ``bucket.endpoint/key``; None: botocore's choice (virtual on AWS, path elsewhere)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        path_style: bool | None = None,
        key_id: str | None = None,
        secret: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if not bucket:
            raise ValueError("S3 file storage needs a bucket")
        self.bucket, self.prefix = bucket, prefix
        self.endpoint_url, self.region, self.path_style = endpoint_url, region, path_style
        self.key_id, self._secret = key_id, secret
        self._timeouts = (connect_timeout, read_timeout, max_attempts)
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._errors: tuple[type[Exception], ...] = ()

    async def client(self) -> Any:
        """The aiobotocore S3 client, opened on first use and kept until ``close()``."""
        async with self._lock:
            if self._client is None:
                self._client = await self._stack.enter_async_context(self._create())
        return self._client

    def _create(self) -> Any:
        try:
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as exc:
            raise RuntimeError(EXTRA_HINT) from exc
        self._errors = (BotoCoreError, ClientError, aiohttp.ClientError)
        connect, read, attempts = self._timeouts
        config = AioConfig(
            connect_timeout=connect,
            read_timeout=read,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            s3={"addressing_style": STYLES[self.path_style]},
            # checksums only where S3 requires them: many S3-compatible servers lack the rest
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return get_session().create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self._secret,
            config=config,
        )

    async def put(self, key: str, data: bytes) -> None:
        s3 = await self.client()
        try:
            await s3.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except self._errors as exc:
            raise self._os_error("put", key, exc) from exc

    async def get(self, key: str) -> bytes:
        s3 = await self.client()
        try:
            resp = await s3.get_object(Bucket=self.bucket, Key=self.prefix + key)
            async with resp["Body"] as body:
                data: bytes = await body.read()
                return data
        except self._errors as exc:
            raise self._os_error("get", key, exc) from exc

    async def delete(self, key: str) -> None:
        s3 = await self.client()
        try:  # S3 answers a missing key's delete with success
            await s3.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._errors as exc:
            raise self._os_error("delete", key, exc) from exc

    async def delete_many(self, keys: Sequence[str]) -> None:
        """DeleteObjects, a thousand keys a request (S3's most); a key it reports as not
        deleted is an OSError."""
        s3 = await self.client()
        for start in range(0, len(keys), DELETE_MANY):
            chunk = [{"Key": self.prefix + k} for k in keys[start : start + DELETE_MANY]]
            try:
                resp = await s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
                )
            except self._errors as exc:
                raise self._os_error("delete", keys[start], exc) from exc
            if errors := resp.get("Errors"):
                first = errors[0]
                raise OSError(
                    f"S3 delete s3://{self.bucket}/{first.get('Key')} failed: "
                    f"{first.get('Code')} {first.get('Message')} ({len(errors)} keys not deleted)"
                )

    def _os_error(self, op: str, key: str, exc: Exception) -> OSError:
        where = f"s3://{self.bucket}/{self.prefix}{key}"
        code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
        if code in MISSING:
            return FileNotFoundError(f"no such file: {where}")
        return OSError(f"S3 {op} {where} failed: {exc}")

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()
