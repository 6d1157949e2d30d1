"""``taskgate serve`` configured for S3 file storage (URL and credentials from the environment)
keeps uploads and task outputs in the bucket of a real S3-protocol server, not in a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_api import submit, wait
from tests.e2e.test_files import PNG
from tests.fakes.moto_s3 import BUCKET, MotoS3, moto_s3


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with moto_s3(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


def test_uploads_and_outputs_live_in_the_bucket(
    make_server: Any, moto: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKGATE_FILES_URL", f"s3://{BUCKET}/e2e?endpoint={moto.url}")
    monkeypatch.setenv("TASKGATE_FILES_KEY_ID", moto.key_id)
    monkeypatch.setenv("TASKGATE_FILES_SECRET", moto.secret)
    server: Server = make_server()
    server.start()
    with server.client(server.create_key("acme")) as c:
        r = c.post("/v1/files", files={"file": ("cat.png", PNG, "image/png")})
        assert r.status_code == 201, r.text
        up = r.json()
        assert c.get(up["url"]).content == PNG
        done = wait(c, submit(c, kind="image", input="fox")["id"])
        assert done["status"] == "SUCCESS", done
        [out] = done["result"]["files"]
        image = c.get(out["url"]).content
    assert image.startswith(b"\x89PNG")
    keys = moto.keys("e2e/")
    assert len(keys) == 2 and f"e2e/{up['id']}" in keys
    s3 = moto.boto("s3", moto.key_id, moto.secret)
    assert s3.get_object(Bucket=BUCKET, Key=f"e2e/{up['id']}")["Body"].read() == PNG
    assert not [p for p in Path(server.root).rglob("*") if p.is_file() and "files" in p.parts]
