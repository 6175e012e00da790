"""A real S3-compatible server (moto's server mode) on the loopback interface, started and
stopped by the tests themselves: shard stores are read from it through the real client, with
nothing mocked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "clipbert-test",
    "AWS_SECRET_ACCESS_KEY": "clipbert-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _wait_for(port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 test server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the S3 test server did not listen on port {port} in {timeout:g} s")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    pid: int

    def cpu_seconds(self) -> float:
        """CPU time the server has used (user + system), from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# the IAM calls of :func:`user_credentials`, made before a server that checks credentials
# starts checking them
_SETUP_CALLS = 3


@contextmanager
def s3_server(check_credentials: bool = False) -> Iterator[S3Server]:
    """Run moto's S3 server on a free loopback port. By default it accepts any credentials;
    ``check_credentials`` makes it check them, against the user :func:`user_credentials`
    creates (call it first)."""
    port = free_port()
    scratch = tempfile.TemporaryDirectory(prefix="s3_server_")
    # its request recorder (a test counts requests with it) writes here, not in the cwd
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(Path(scratch.name) / "recording")}
    if check_credentials:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_CALLS)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        _wait_for(port, process)
        yield S3Server(f"http://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        scratch.cleanup()


def user_credentials(endpoint: str) -> tuple[str, str]:
    """A user allowed everything on a server started with ``check_credentials``: its access
    key id and secret."""
    import boto3

    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName="clipbert")
    allow_all = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [allow_all]})
    iam.put_user_policy(UserName="clipbert", PolicyName="all", PolicyDocument=policy)
    key = iam.create_access_key(UserName="clipbert")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]
