"""Artifact storage behind one interface: a local directory or any S3 API (MinIO, AWS, GCS interop).

Backends are chosen by URI scheme (``file://`` or ``s3://bucket/prefix``).
Artifacts are content-addressed: the key carries the sha256, so the same bytes
are stored once and a stored artifact never changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

from fleet_core.errors import NotFound, PayloadTooLarge
from fleet_core.settings import FleetSettings

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    sha256: str
    size_bytes: int


class SpooledUpload:
    """Bytes received from a client, hashed and size-checked while they stream to a temp file."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * CHUNK)  # noqa: SIM115

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            self.close()
            raise PayloadTooLarge(
                f"the artifact exceeds the limit of {self.max_bytes} bytes", field="artifact"
            )
        self._hash.update(chunk)
        self.file.write(chunk)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def read_all(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def close(self) -> None:
        self.file.close()


class ArtifactStore(ABC):
    """Where model and dataset artifacts live."""

    base_uri: str

    @abstractmethod
    async def put(self, key: str, data: IO[bytes], size: int) -> str:
        """Store ``data`` under ``key`` and return its URI."""

    @abstractmethod
    async def get(self, uri: str) -> bytes:
        """The bytes at ``uri``; raises NotFound."""

    @abstractmethod
    async def exists(self, uri: str) -> bool: ...

    def owns(self, uri: str) -> bool:
        return uri.startswith(self.base_uri.rstrip("/") + "/")

    @abstractmethod
    def relative_key(self, uri: str) -> str:
        """The key of ``uri`` below this store's base (``models/churn/<sha>/model.skops``); raises
        NotFound for a URI outside the store."""

    async def put_content_addressed(
        self, prefix: str, filename: str, upload: SpooledUpload
    ) -> StoredArtifact:
        key = f"{prefix.strip('/')}/{upload.sha256}/{filename}"
        upload.file.seek(0)
        uri = await self.put(key, upload.file, upload.size)
        return StoredArtifact(uri=uri, sha256=upload.sha256, size_bytes=upload.size)

    async def sha256_of(self, uri: str, max_bytes: int) -> StoredArtifact:
        """Hash an existing artifact (to verify a client's claim before registering it)."""
        data = await self.get(uri)
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"the artifact at {uri} exceeds {max_bytes} bytes", field="artifact_uri")
        return StoredArtifact(uri=uri, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))

    async def stream(self, uri: str) -> AsyncIterator[bytes]:
        data = await self.get(uri)
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]


class LocalArtifactStore(ArtifactStore):
    """Artifacts as files under one directory (``file:///path``)."""

    def __init__(self, base_uri: str) -> None:
        # url2pathname undoes the percent-encoding of Path.as_uri() (spaces, non-ASCII names).
        self.root = Path(url2pathname(urlparse(base_uri).path))
        self.root.mkdir(parents=True, exist_ok=True)
        self.base_uri = self.root.as_uri()

    def _path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise NotFound(f"{uri} is not a file:// artifact", field="artifact_uri")
        path = Path(url2pathname(parsed.path)).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise NotFound(f"{uri} is outside the artifact store {self.base_uri}", field="artifact_uri")
        return path

    async def put(self, key: str, data: IO[bytes], size: int) -> str:
        target = (self.root / key).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact key escapes the store: {key}")

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A temporary file of its own per write: two concurrent uploads of the same bytes (one
            # content-addressed key) in one process must not share, and lose, the same temp file.
            tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as out:
                shutil.copyfileobj(data, out, CHUNK)
            os.replace(tmp, target)

        await asyncio.to_thread(write)
        return target.as_uri()

    def relative_key(self, uri: str) -> str:
        return self._path(uri).relative_to(self.root.resolve()).as_posix()

    async def get(self, uri: str) -> bytes:
        path = self._path(uri)
        if not path.is_file():
            raise NotFound(f"no artifact at {uri}", field="artifact_uri")
        return await asyncio.to_thread(path.read_bytes)

    async def exists(self, uri: str) -> bool:
        try:
            return self._path(uri).is_file()
        except NotFound:
            return False


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects in an S3 bucket through the MinIO SDK (``s3://bucket/prefix``)."""

    def __init__(
        self,
        base_uri: str,
        *,
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str | None = None,
        secure: bool = True,
        sse: Literal["s3", "kms", "none"] = "none",
        kms_key_id: str | None = None,
    ) -> None:
        from minio import Minio
        from minio.sse import SseKMS, SseS3

        parsed = urlparse(base_uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.base_uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        host = endpoint or "s3.amazonaws.com"
        if "://" in host:
            ep = urlparse(host)
            host, secure = ep.netloc, ep.scheme == "https"
        self._client = Minio(host, access_key=access_key, secret_key=secret_key, region=region, secure=secure)
        self._bucket_ready = False
        # Asked on every object we write, so encryption never depends on the bucket's defaults.
        self._sse = {"s3": SseS3(), "kms": SseKMS(kms_key_id or "", {}), "none": None}[sse]

    def _key(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or parsed.netloc != self.bucket:
            raise NotFound(f"{uri} is not in bucket {self.bucket}", field="artifact_uri")
        return parsed.path.lstrip("/")

    def relative_key(self, uri: str) -> str:
        key = self._key(uri)
        if not self.prefix:
            return key
        if not key.startswith(self.prefix + "/"):
            raise NotFound(f"{uri} is outside the artifact store {self.base_uri}", field="artifact_uri")
        return key.removeprefix(self.prefix + "/")

    async def _ensure_bucket(self) -> None:
        if not self._bucket_ready:

            def make() -> None:
                if not self._client.bucket_exists(bucket_name=self.bucket):
                    self._client.make_bucket(bucket_name=self.bucket)

            await asyncio.to_thread(make)
            self._bucket_ready = True

    async def put(self, key: str, data: IO[bytes], size: int) -> str:
        await self._ensure_bucket()
        object_name = f"{self.prefix}/{key}" if self.prefix else key
        await asyncio.to_thread(
            self._client.put_object,
            bucket_name=self.bucket,
            object_name=object_name,
            data=data,
            length=size,
            sse=self._sse,
        )
        return f"s3://{self.bucket}/{object_name}"

    async def get(self, uri: str) -> bytes:
        from minio.error import S3Error

        key = self._key(uri)

        def read() -> bytes:
            resp = self._client.get_object(bucket_name=self.bucket, object_name=key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        try:
            return await asyncio.to_thread(read)
        except S3Error as exc:
            if exc.code in {"NoSuchKey", "NoSuchBucket"}:
                raise NotFound(f"no artifact at {uri}", field="artifact_uri") from exc
            raise

    async def exists(self, uri: str) -> bool:
        from minio.error import S3Error

        try:
            key = self._key(uri)
            await asyncio.to_thread(self._client.stat_object, bucket_name=self.bucket, object_name=key)
            return True
        except (S3Error, NotFound):
            return False


def artifact_store(base_uri: str, settings: FleetSettings) -> ArtifactStore:
    """The store for ``base_uri``, chosen by its scheme."""
    scheme = urlparse(base_uri).scheme
    if scheme == "file":
        return LocalArtifactStore(base_uri)
    if scheme == "s3":
        return S3ArtifactStore(
            base_uri,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key.get_secret_value() if settings.s3_access_key else None,
            secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            region=settings.s3_region,
            secure=settings.s3_secure,
            sse=settings.resolved_s3_sse,
            kms_key_id=settings.s3_sse_kms_key_id,
        )
    raise ValueError(f"unsupported artifact store URI {base_uri!r}; use file:// or s3://")


def bytes_io(data: bytes) -> io.BytesIO:
    return io.BytesIO(data)
