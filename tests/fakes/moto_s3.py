"""moto's S3 server as a subprocess on a loopback port, with IAM authentication on (so wrong
credentials are refused as AWS would): one bucket, one user allowed everything.

    with moto_s3(tmp_path / "moto.log") as s3:   # or the module-scoped ``moto`` fixtures
        s3.url, s3.key_id, s3.secret, s3.keys(prefix)
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

BUCKET = "taskgate-files"
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoS3:
    """moto's server on a free loopback port: one bucket, one IAM user allowed everything."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self._wait(log)
        self.key_id, self.secret = self._set_up()

    def _wait(self, log: Path) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto server did not start: {log.read_text()}")

    def boto(self, service: str, key_id: str = "setup", secret: str = "setup") -> Any:
        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    def _set_up(self) -> tuple[str, str]:
        """Before authentication is switched on: the user, its key and the bucket."""
        iam = self.boto("iam")
        iam.create_user(UserName="taskgate")
        iam.put_user_policy(
            UserName="taskgate", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL)
        )
        key = iam.create_access_key(UserName="taskgate")["AccessKey"]
        self.boto("s3").create_bucket(Bucket=BUCKET)
        with socket.create_connection(("127.0.0.1", self.port)) as s:  # /moto-api/reset-auth
            s.sendall(
                b"POST /moto-api/reset-auth HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                b"Content-Length: 1\r\n\r\n0"
            )
            assert b" 200 " in s.recv(1024).split(b"\r\n", 1)[0] + b" "
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    def keys(self, prefix: str = "") -> list[str]:
        s3 = self.boto("s3", self.key_id, self.secret)
        found = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
        return sorted(str(o["Key"]) for o in found)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def moto_s3(log: Path) -> Iterator[MotoS3]:
    server = MotoS3(log)
    try:
        yield server
    finally:
        server.stop()
