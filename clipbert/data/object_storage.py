"""Reaching S3-compatible object storage: the settings (``task.datamodule.storage``), a
client, and ``s3://bucket/prefix`` URLs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REMOTE_SCHEMES = ("s3://",)


def is_remote(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(REMOTE_SCHEMES)


@dataclass(frozen=True)
class RemoteSettings:
    """How to reach object storage (``task.datamodule.storage``). Unset values fall back on
    boto3's own sources: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    ``AWS_PROFILE``, ``~/.aws/config``. Every request gives up after ``timeout_s`` seconds
    (connect and read) and ``retries`` retries, so a dead endpoint is an error, not a hang.
    ``cache_dir`` holds the downloaded index files (items are fetched by range request)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    timeout_s: float = 20.0
    retries: int = 2
    cache_dir: str = "~/.cache/clipbert/shards"

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError(f"storage.timeout_s must be > 0 seconds, got {self.timeout_s}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"storage.retries must be an integer >= 0, got {self.retries!r}")

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None, key: str) -> RemoteSettings:
        """The config block at ``key`` (e.g. ``task.datamodule.storage``), errors naming it."""
        try:
            return cls(**(values or {}))
        except (TypeError, ValueError) as err:  # TypeError: an unknown key
            raise ValueError(f"{key}: {err}; fix it in the config or on the command line") from None

    def storage_options(self) -> dict[str, Any]:
        """boto3 client arguments (litdata passes them through)."""
        from botocore.config import Config

        options: dict[str, Any] = {
            "config": Config(
                connect_timeout=self.timeout_s,
                read_timeout=self.timeout_s,
                retries={"total_max_attempts": self.retries + 1, "mode": "standard"},
            )
        }
        if self.endpoint_url:
            options["endpoint_url"] = self.endpoint_url
        if self.region:
            options["region_name"] = self.region
        return options

    def session_options(self) -> dict[str, Any]:
        return {"profile_name": self.profile} if self.profile else {}

    def client(self) -> Any:
        import boto3

        return boto3.Session(**self.session_options()).client("s3", **self.storage_options())


def object_key(prefix: str, name: str) -> str:
    """The key of ``name`` under ``prefix`` in a bucket (no leading slash at the root)."""
    return f"{prefix}/{name}" if prefix else name


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{url!r} names no bucket; write it as s3://bucket/prefix")
    return bucket, prefix.strip("/")
