"""Image bytes in S3 or MinIO, through one long-lived aioboto3 client.

Presigned URLs are computed by a second client configured with the public endpoint (signing is
local, that client never connects), because a SigV4 signature covers the host the browser uses.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import aioboto3
from botocore.config import Config as BotoConfig
from botocore.context import get_context
from botocore.exceptions import BotoCoreError, ClientError

from gateway.config import Config
from gateway.errors import BlobNotFound, Conflict, Invalid, Unavailable
from gateway.storage.base import STAGING_PREFIX, BlobInfo, Progress, StagedWrite, UploadForm, content_disposition

log = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CHUNK = 256 * 1024


class _ErrorTranslator:
    """`with _ErrorTranslator("do x"):` turns botocore's errors into the gateway's at the
    boundary: a missing key, an existing one, or an unavailable store that failed to do x."""

    def __init__(self, action: str):
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _MISSING:
            raise BlobNotFound("the image's object is missing") from exc
        if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
            raise Conflict("an object with that key exists", code="object_exists") from exc
        if isinstance(exc, (ClientError, BotoCoreError, asyncio.TimeoutError, OSError)):
            log.warning("object store failed to %s: %s", self.action, exc)
            raise Unavailable(f"the object store failed to {self.action}", code="storage_unavailable") from exc
        return False


class _EndpointsWithoutUnusedParams:
    """An S3 client's endpoint provider that leaves out the parameters its ruleset declares but
    never reads (today `Key`, `Prefix`, `CopySource`): botocore caches resolved endpoints by
    every parameter, so with the object key among them each put or presign of a new key
    evaluated the whole ruleset again (about 0.14 ms of CPU). Without them, its cache hits."""

    def __init__(self, provider: Any, unused: frozenset[str]):
        self._provider = provider
        self._unused = unused

    def resolve_endpoint(self, **params: Any) -> Any:
        for name in self._unused:
            params.pop(name, None)
        return self._provider.resolve_endpoint(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)


def _references(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        if isinstance(node.get("ref"), str):
            found.add(node["ref"])
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for value in node:
            _references(value, found)
    return found


def cache_endpoints(client: Any) -> None:
    """Install `_EndpointsWithoutUnusedParams` on `client` (private botocore attributes, so
    where they are not as expected the client stays as it is)."""
    resolver: Any = getattr(client, "_ruleset_resolver", None)
    provider = getattr(resolver, "_provider", None)
    loader = getattr(client, "_loader", None)
    if provider is None or loader is None or isinstance(provider, _EndpointsWithoutUnusedParams):
        return
    ruleset = loader.load_service_model("s3", "endpoint-rule-set-1", client.meta.service_model.api_version)
    unused = frozenset(ruleset.get("parameters", {})) - _references(ruleset.get("rules", []), set())
    if unused:
        resolver._provider = _EndpointsWithoutUnusedParams(provider, unused)


def cache_user_agent(client: Any) -> None:
    """botocore builds its User-Agent header twice per request, sanitizing every component
    each time (a tenth of a put's CPU); it changes only with the features the request context
    names, so each string is built once per such set. (A private botocore attribute again:
    where it is missing, nothing changes.)"""
    creator: Any = getattr(client, "_user_agent_creator", None)
    build = getattr(creator, "to_string", None)
    if build is None or getattr(build, "cached", False):
        return
    built: dict[frozenset[str], str] = {}

    def to_string() -> str:
        context = get_context()
        features = frozenset(context.features) if context is not None else frozenset()
        value = built.get(features)
        if value is None:
            if len(built) >= 64:
                built.clear()
            value = built[features] = build()
        return value

    to_string.cached = True  # type: ignore[attr-defined]
    # On the instance: botocore's own request-created handler calls `self.to_string()` too.
    creator.to_string = to_string


class S3BlobStore:
    name = "s3"

    def __init__(self, client: Any, presigner: Any, bucket: str, part_size: int):
        self._client = client
        self._presigner = presigner
        self.bucket = bucket
        self._part_size = part_size

    @classmethod
    @asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[S3BlobStore]:
        """The store with its clients, for the app's lifetime; the bucket is ensured on entry."""
        s3 = config.storage.s3
        session = aioboto3.Session()
        boto_config = BotoConfig(
            signature_version="s3v4",
            # No SHA-256 of the body for the signature: every put carries an x-amz-checksum-sha256
            # header, itself signed, that the store verifies against the body; hashing the bytes a
            # second time for SigV4 (as botocore does over plain HTTP) adds nothing but CPU.
            s3={"addressing_style": s3.addressing_style, "payload_signing_enabled": False},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=50,
        )
        credentials = {
            "region_name": s3.region,
            "aws_access_key_id": s3.access_key_id,
            "aws_secret_access_key": s3.secret_access_key.reveal() if s3.secret_access_key else None,
            "config": boto_config,
        }
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(session.client("s3", endpoint_url=s3.endpoint_url, **credentials))
            presigner = client
            if s3.public_endpoint_url and s3.public_endpoint_url != s3.endpoint_url:
                presigner = await stack.enter_async_context(
                    session.client("s3", endpoint_url=s3.public_endpoint_url, **credentials)
                )
            for each in {id(client): client, id(presigner): presigner}.values():
                cache_endpoints(each)
                cache_user_agent(each)
            store = cls(client, presigner, s3.bucket, s3.part_size)
            await store.ensure_bucket(s3.region)
            yield store

    async def ensure_bucket(self, region: str) -> None:
        with _ErrorTranslator("check the bucket"):
            try:
                await self._client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                await self._client.create_bucket(**kwargs)
                log.info("created bucket %s", self.bucket)
            except ClientError as exc:
                # Another replica created it between our check and our create.
                if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, content_type: str, filename: str, sha256: Callable[[], bytes] | None = None
    ) -> None:
        # A SHA-256 of each request's body (each part's, for multipart) travels with it and the
        # store refuses a body that does not match, so a corrupted transfer is never stored. Named
        # explicitly, it holds even where AWS_REQUEST_CHECKSUM_CALCULATION turns the default off.
        headers = {"ContentType": content_type, "ContentDisposition": content_disposition(filename), "ChecksumAlgorithm": "SHA256"}
        # Chunks kept as they come and joined once (one copy of the body, none for a body of one
        # chunk), rather than appended to a buffer and copied out of it.
        pieces: list[bytes] = []
        size = 0
        iterator = chunks.__aiter__()
        async for chunk in iterator:
            pieces.append(chunk)
            size += len(chunk)
            if size >= self._part_size:
                await self._put_multipart(key, bytearray(b"".join(pieces)), iterator, headers)
                return
        body = pieces[0] if len(pieces) == 1 and type(pieces[0]) is bytes else b"".join(pieces)
        if sha256 is not None:
            # The caller hashed these bytes as they arrived: the SDK need not hash them again,
            # and the checksum now covers them from the moment they reached us.
            del headers["ChecksumAlgorithm"]
            headers["ChecksumSHA256"] = base64.b64encode(sha256()).decode()
        with _ErrorTranslator("store the object"):
            # If-None-Match: a put never replaces an object; keys are never reused.
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", **headers)

    async def _put_multipart(self, key: str, buffer: bytearray, rest: AsyncIterator[bytes], headers: dict[str, str]) -> None:
        with _ErrorTranslator("start a multipart upload"):
            upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key, **headers)
        upload_id = upload["UploadId"]
        parts: list[dict[str, Any]] = []

        async def send(body: bytes) -> None:
            with _ErrorTranslator("store a part"):
                answer = await self._client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=len(parts) + 1, Body=body,
                    ChecksumAlgorithm="SHA256",
                )
            part = {"PartNumber": len(parts) + 1, "ETag": answer["ETag"]}
            # When the SDK sent a flexible checksum with the part, completion must repeat it.
            part.update({name: value for name, value in answer.items() if name.startswith("Checksum") and name != "ChecksumType"})
            parts.append(part)

        try:
            async for chunk in rest:
                buffer += chunk
                while len(buffer) >= self._part_size:
                    await send(bytes(buffer[: self._part_size]))
                    del buffer[: self._part_size]
            if buffer or not parts:
                await send(bytes(buffer))
            with _ErrorTranslator("complete a multipart upload"):
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
                )
        except BaseException:
            try:
                await asyncio.shield(self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id))
            except (ClientError, BotoCoreError, OSError) as exc:
                # Left to the bucket's lifecycle rule for incomplete uploads.
                log.warning("could not abort multipart upload of %s: %s", key, exc)
            raise

    async def get(self, key: str) -> AsyncIterator[bytes]:
        with _ErrorTranslator("read the object"):
            answer = await self._client.get_object(Bucket=self.bucket, Key=key)
            # Read through the StreamingBody: entering it yields the raw aiohttp response.
            body = answer["Body"]
            async with body:
                while chunk := await body.read(_CHUNK):
                    yield chunk

    async def delete(self, key: str) -> None:
        with _ErrorTranslator("delete the object"):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def delete_many(self, keys: list[str]) -> None:
        if not keys:
            return
        with _ErrorTranslator("delete objects"):
            answer = await self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True}
            )
        errors = [e for e in answer.get("Errors", []) if e.get("Code") not in _MISSING]
        if errors:
            log.warning("object store refused to delete %d objects, first: %s", len(errors), errors[0])
            raise Unavailable("the object store failed to delete objects", code="storage_unavailable")

    async def list(self, prefix: str) -> AsyncIterator[BlobInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        with _ErrorTranslator("list objects"):
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield BlobInfo(item["Key"], item["Size"], item["LastModified"])

    async def partial_writes(self, older_than: datetime, prefix: str = "", *, remove: bool = False, keep: frozenset[str] = frozenset()) -> int:
        # MinIO lists a bucket's multipart uploads only without a prefix, so the filter is ours.
        found = 0
        paginator = self._client.get_paginator("list_multipart_uploads")
        with _ErrorTranslator("list incomplete uploads"):
            async for page in paginator.paginate(Bucket=self.bucket):
                for upload in page.get("Uploads", []):
                    if not upload["Key"].startswith(prefix) or upload["Initiated"] >= older_than or upload["Key"] in keep:
                        continue
                    found += 1
                    if remove:
                        await self._client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        return found

    async def presign(self, key: str, *, ttl: int, content_type: str, filename: str) -> str:
        with _ErrorTranslator("sign a link"):
            return await self._presigner.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": key,
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": content_disposition(filename),
                },
                ExpiresIn=ttl,
            )

    async def ping(self) -> None:
        with _ErrorTranslator("answer"):
            await asyncio.wait_for(self._client.head_bucket(Bucket=self.bucket), timeout=3)

    # --- staged writes (resumable uploads) and direct uploads ---------------------------------
    # A staged write is an S3 multipart upload at the final key, of parts of `part_size`; bytes
    # short of a part wait in a tail object under STAGING_PREFIX until the next request or the
    # end. Each tail has its own key (its start and length), so the state the metadata store
    # holds always names a tail that exists, whatever a crash interrupted.

    def _piece_key(self, staged: StagedWrite, start: int, length: int) -> str:
        return f"{STAGING_PREFIX}{staged.id}/{start:012d}-{length:012d}"

    async def _read_tail(self, staged: StagedWrite) -> bytearray:
        state = staged.store
        if not state.get("tail"):
            return bytearray()
        try:
            with _ErrorTranslator("read a staged tail"):
                answer = await self._client.get_object(Bucket=self.bucket, Key=state["tail_key"], Range=f"bytes=0-{state['tail'] - 1}")
                body = answer["Body"]
                async with body:
                    tail = bytearray(await body.read())
        except BlobNotFound:
            tail = bytearray()
        if len(tail) != state["tail"]:
            raise Unavailable("the upload's stored bytes are missing", code="staging_lost")
        return tail

    async def _send_part(self, staged: StagedWrite, body: bytes) -> None:
        state = staged.store
        if staged.key is None:
            raise Unavailable("a staged write reached its first part without a key", code="staging_failed")
        if not state.get("multipart"):
            with _ErrorTranslator("start a multipart upload"):
                answer = await self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=staged.key, ContentType=staged.content_type,
                    ContentDisposition=content_disposition(staged.filename), ChecksumAlgorithm="SHA256",
                )
            state["multipart"] = answer["UploadId"]
            state["parts"] = []
        number = len(state["parts"]) + 1
        with _ErrorTranslator("store a part"):
            answer = await self._client.upload_part(
                Bucket=self.bucket, Key=staged.key, UploadId=state["multipart"], PartNumber=number, Body=body, ChecksumAlgorithm="SHA256"
            )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        part.update({name: value for name, value in answer.items() if name.startswith("Checksum") and name != "ChecksumType"})
        state["parts"].append(part)
        state["in_parts"] = state.get("in_parts", 0) + len(body)

    async def append_staged(self, staged: StagedWrite, chunks: AsyncIterator[bytes], progress: Progress) -> None:
        state = staged.store
        buffer = await self._read_tail(staged)
        try:
            async for chunk in chunks:
                buffer += chunk
                while len(buffer) >= self._part_size:
                    await self._send_part(staged, bytes(buffer[: self._part_size]))
                    del buffer[: self._part_size]
                    # Only the parts are durable; the buffer is not until it is a tail.
                    state["tail"] = 0
                    staged.size = state["in_parts"]
                    await progress(staged)
        finally:
            # What arrived is kept as the tail, also when the body broke off; a failure to keep
            # it leaves the last reported state, which is still whole.
            if buffer and (len(buffer) != state.get("tail") or not state.get("tail_key")):
                start = state.get("in_parts", 0)
                key = self._piece_key(staged, start, len(buffer))
                with _ErrorTranslator("store a staged tail"):
                    await self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
                state["tail"], state["tail_key"] = len(buffer), key
                staged.size = start + len(buffer)
                await progress(staged)

    async def finish_staged(self, staged: StagedWrite) -> None:
        state = staged.store
        assert staged.key is not None
        if not state.get("multipart"):
            # Shorter than a part: one PutObject, as `put` would have done.
            tail = await self._read_tail(staged)
            with _ErrorTranslator("store the object"):
                await self._client.put_object(
                    Bucket=self.bucket, Key=staged.key, Body=bytes(tail), IfNoneMatch="*", ContentType=staged.content_type,
                    ContentDisposition=content_disposition(staged.filename), ChecksumAlgorithm="SHA256",
                )
        else:
            if state.get("tail"):
                await self._send_part(staged, bytes(await self._read_tail(staged)))
            with _ErrorTranslator("complete a multipart upload"):
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=staged.key, UploadId=state["multipart"], MultipartUpload={"Parts": state["parts"]}, IfNoneMatch="*"
                )
        await self._delete_pieces(staged.id)

    async def discard_staged(self, staged: StagedWrite) -> None:
        state = staged.store
        if state.get("multipart") and staged.key:
            with _ErrorTranslator("abort a multipart upload"):
                try:
                    await self._client.abort_multipart_upload(Bucket=self.bucket, Key=staged.key, UploadId=state["multipart"])
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") not in ("NoSuchUpload", "404"):
                        raise
        await self._delete_pieces(staged.id)

    async def _delete_pieces(self, upload_id: str) -> None:
        keys = [blob.key async for blob in self.list(f"{STAGING_PREFIX}{upload_id}/")]
        await self.delete_many(keys)

    async def staged_pieces(self) -> AsyncIterator[tuple[str, str, datetime]]:
        async for blob in self.list(STAGING_PREFIX):
            upload_id = blob.key[len(STAGING_PREFIX):].partition("/")[0]
            yield upload_id, blob.key, blob.last_modified

    async def delete_piece(self, piece: str) -> None:
        if not piece.startswith(STAGING_PREFIX):
            raise Invalid("not a staging piece", code="invalid_key")
        await self.delete(piece)

    async def upload_form(self, key: str, *, max_bytes: int, ttl: int, content_type: str) -> UploadForm:
        # MinIO refuses a form field the policy does not name, so every field is a condition.
        fields = {"Content-Type": content_type}
        conditions: list[Any] = [
            {"bucket": self.bucket}, {"key": key}, ["content-length-range", 1, max_bytes], ["starts-with", "$Content-Type", "image/"],
        ]
        with _ErrorTranslator("sign an upload form"):
            signed = await self._presigner.generate_presigned_post(
                Bucket=self.bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=ttl
            )
        return UploadForm(signed["url"], dict(signed["fields"]), datetime.now(timezone.utc) + timedelta(seconds=ttl))

    async def head(self, key: str) -> BlobInfo:
        with _ErrorTranslator("look at the object"):
            answer = await self._client.head_object(Bucket=self.bucket, Key=key)
        return BlobInfo(key, answer["ContentLength"], answer["LastModified"])

    async def get_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        with _ErrorTranslator("read the object"):
            answer = await self._client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
            body = answer["Body"]
            async with body:
                while chunk := await body.read(_CHUNK):
                    yield chunk
