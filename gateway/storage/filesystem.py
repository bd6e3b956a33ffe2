"""Image bytes on local disk: the embedded default.

Writes are atomic (a temp file in the same file system, fsync, rename, fsync of the directory),
so a crash leaves the old state or the new one, never half a file. Blocking file I/O runs in
threads. Downloads go through a gateway route signed with HMAC (`gateway.storage.signing`), which
serves the file with Range, ETag and caching headers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.errors import BlobNotFound, Conflict, Invalid, Unavailable
from gateway.names import COLLECTION_PATTERN, IMAGE_ID_PATTERN
from gateway.storage.base import RENDITIONS_DIR, BlobInfo, Progress, StagedWrite, UploadForm
from gateway.storage.signing import UrlSigner, load_or_create_secret

log = logging.getLogger(__name__)

DOWNLOAD_ROUTE = "/_objects/"
# In the data directory.
OBJECTS_DIRECTORY = "objects"
SECRET_FILE = ".signing_key"
_KEY_RE = re.compile(rf"{COLLECTION_PATTERN}/(?:_renditions/{IMAGE_ID_PATTERN}/[a-z0-9-]{{1,64}}\.|{IMAGE_ID_PATTERN}\.)[a-z]{{3,4}}")
# Where direct-upload forms are sent on this backend (S3 takes them itself).
UPLOAD_ROUTE = "/_uploads/"
_CHUNK = 256 * 1024
# How much of an upload is gathered before it is written (per upload in flight).
_WRITE_BATCH = 1024 * 1024


class FilesystemBlobStore:
    name = "filesystem"

    def __init__(self, root: Path, signer: UrlSigner):
        self.root = root.resolve()
        self._tmp = self.root / ".tmp"
        self._signer = signer
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._staging = self.root / ".uploads"
        self._staging.mkdir(parents=True, exist_ok=True)
        log.warning("filesystem object store at %s: for development and single-host use", self.root)

    @classmethod
    @asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[FilesystemBlobStore]:
        """The store under `<data_dir>/objects`. Links are signed with `storage.signing_secret`,
        else with a key generated once into the data directory, which every process sharing
        the directory reads."""
        secret = config.storage.signing_secret
        key = secret.reveal().encode() if secret else await asyncio.to_thread(load_or_create_secret, config.data_dir / SECRET_FILE)
        yield cls(config.data_dir / OBJECTS_DIRECTORY, UrlSigner(key))

    def local_path(self, key: str) -> Path:
        """The file for `key`; refuses anything that is not a well-formed key inside the root."""
        _check_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise Invalid("malformed object key", code="invalid_key")
        return path

    async def put(
        self, key: str, chunks: AsyncIterator[bytes], *, content_type: str, filename: str, sha256: Callable[[], bytes] | None = None
    ) -> None:
        # Chunks are gathered and written a batch at a time, so an ordinary image costs one
        # thread hop (create, write, sync, link) instead of one per step and chunk; each hop
        # costs more CPU than the write it carries.
        _check_key(key)  # before any byte is read; the path is resolved (file system calls) in the thread
        tmp = _TempFile(self._tmp)
        pending: list[bytes] = []
        size = 0
        step: asyncio.Future[None] | None = None
        try:
            async for chunk in chunks:
                pending.append(chunk)
                size += len(chunk)
                if size >= _WRITE_BATCH:
                    step = asyncio.ensure_future(asyncio.to_thread(tmp.write, pending))
                    await asyncio.shield(step)
                    pending, size = [], 0
            step = asyncio.ensure_future(asyncio.to_thread(tmp.publish, pending, lambda: self.local_path(key)))
            await asyncio.shield(step)
        except BaseException:
            # A cancelled hop still runs to its end in its thread: wait for it, then remove what
            # it made, so no temp file is left behind.
            if step is not None and not step.done():
                await asyncio.wait([step])
            await asyncio.shield(asyncio.to_thread(tmp.discard))
            raise

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self.local_path(key)
        opening = asyncio.ensure_future(asyncio.to_thread(path.open, "rb"))
        try:
            handle = await asyncio.shield(opening)
        except FileNotFoundError:
            raise BlobNotFound("the image's object is missing") from None
        except asyncio.CancelledError:
            # The thread opens the file regardless (a reader that left, a server stopping);
            # close it once it has, or it leaks.
            opening.add_done_callback(_close_opened)
            raise
        with handle:
            while chunk := await asyncio.to_thread(handle.read, _CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        path = self.local_path(key)
        try:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            if path.parent.parent.name == RENDITIONS_DIR:
                # An image's last rendition leaves no directory behind.
                await asyncio.to_thread(_remove_if_empty, path.parent)
        except OSError as exc:
            raise Unavailable(f"the object store failed to delete ({exc.strerror})", code="storage_unavailable") from exc

    async def delete_many(self, keys: list[str]) -> None:
        for key in keys:
            await self.delete(key)

    async def list(self, prefix: str) -> AsyncIterator[BlobInfo]:
        # Start in the deepest directory the prefix names; below it every entry is walked.
        directory, _, name_prefix = prefix.rpartition("/")
        async for blob in self._walk(directory, name_prefix):
            yield blob

    async def _walk(self, directory: str, name_prefix: str) -> AsyncIterator[BlobInfo]:
        folder = self.root / directory if directory else self.root
        try:
            entries = await asyncio.to_thread(_entries, folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        # A directory sorts as "<name>/" does, so the order is the keys' order ("a-b/..." <
        # "a/..." < "a0...") as in S3.
        entries.sort(key=lambda entry: entry[0] + "/" if entry[1] else entry[0])
        for name, is_dir, size, mtime in entries:
            if not name.startswith(name_prefix) or (not directory and (name.startswith(".") or not is_dir)):
                continue
            key = f"{directory}/{name}" if directory else name
            if is_dir:
                async for blob in self._walk(key, ""):
                    yield blob
            else:
                yield BlobInfo(key, size, datetime.fromtimestamp(mtime, timezone.utc))

    async def partial_writes(self, older_than: datetime, prefix: str = "", *, remove: bool = False, keep: frozenset[str] = frozenset()) -> int:
        # Temporary files carry no key, so they belong to no collection: only a whole-store
        # sweep (no prefix) looks at them.
        if prefix:
            return 0

        def sweep() -> int:
            found = 0
            for entry in os.scandir(self._tmp):
                try:
                    if not entry.is_file() or datetime.fromtimestamp(entry.stat().st_mtime, timezone.utc) >= older_than:
                        continue
                    found += 1
                    if remove:
                        os.unlink(entry.path)
                except FileNotFoundError:
                    continue
            return found

        try:
            return await asyncio.to_thread(sweep)
        except OSError as exc:
            raise Unavailable(f"the object store failed to sweep temporary files ({exc.strerror})", code="storage_unavailable") from exc

    async def presign(self, key: str, *, ttl: int, content_type: str, filename: str) -> str:
        self.local_path(key)
        return self._signer.sign(DOWNLOAD_ROUTE + key, {"filename": filename}, ttl=ttl)

    def verify(self, method: str, path: str, query: dict[str, str]) -> None:
        self._signer.verify(method, path, query)

    async def ping(self) -> None:
        ok = await asyncio.to_thread(os.access, self.root, os.W_OK)
        if not ok:
            raise Unavailable("the object store directory is not writable", code="storage_unavailable")

    # --- staged writes (resumable uploads) and direct uploads ---------------------------------
    # A staged write is one partial file in `.uploads/`, beside the objects (and apart from
    # `.tmp`, which `partial_writes` sweeps by age: a paused upload is not a crash's leftover).

    def _partial(self, upload_id: str) -> Path:
        if re.fullmatch(r"[0-9a-f]{32}", upload_id) is None:
            raise Invalid("malformed upload id", code="invalid_upload_id")
        return self._staging / upload_id

    async def append_staged(self, staged: StagedWrite, chunks: AsyncIterator[bytes], progress: Progress) -> None:
        path = self._partial(staged.id)

        def open_at_end() -> Any:
            exists = path.exists()
            if (exists and path.stat().st_size < staged.size) or (not exists and staged.size > 0):
                # Never filled with zeros: bytes a client was told are stored must be there.
                raise Unavailable("the upload's stored bytes are missing", code="staging_lost")
            handle = open(path, "r+b" if exists else "w+b")
            # Bytes past the recorded size are a failed request's, never acknowledged.
            handle.truncate(staged.size)
            handle.seek(staged.size)
            return handle

        try:
            handle = await asyncio.to_thread(open_at_end)
        except OSError as exc:
            raise Unavailable(f"the object store failed to stage ({exc.strerror})", code="storage_unavailable") from exc
        written = 0
        try:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
        finally:
            # Kept also when the body broke off: what arrived is the client's to resume from.
            try:
                await asyncio.to_thread(_flush_and_sync, handle)
            finally:
                await asyncio.to_thread(handle.close)
            if written:
                staged.size += written
                await progress(staged)

    async def finish_staged(self, staged: StagedWrite) -> None:
        assert staged.key is not None
        target = self.local_path(staged.key)
        await asyncio.to_thread(_publish, self._partial(staged.id), target)

    async def discard_staged(self, staged: StagedWrite) -> None:
        await asyncio.to_thread(self._partial(staged.id).unlink, missing_ok=True)

    async def staged_pieces(self) -> AsyncIterator[tuple[str, str, datetime]]:
        for entry in await asyncio.to_thread(lambda: list(os.scandir(self._staging))):
            try:
                modified = datetime.fromtimestamp(entry.stat().st_mtime, timezone.utc)
            except FileNotFoundError:
                continue
            yield entry.name, entry.name, modified

    async def delete_piece(self, piece: str) -> None:
        await asyncio.to_thread(self._partial(piece).unlink, missing_ok=True)

    async def upload_form(self, key: str, *, max_bytes: int, ttl: int, content_type: str) -> UploadForm:
        self.local_path(key)
        url = self._signer.sign(UPLOAD_ROUTE + key, {"max_bytes": str(max_bytes)}, ttl=ttl, method="POST")
        expires = datetime.now(timezone.utc) + timedelta(seconds=ttl)
        return UploadForm(url, {"key": key, "Content-Type": content_type}, expires)

    async def head(self, key: str) -> BlobInfo:
        path = self.local_path(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            raise BlobNotFound("the image's object is missing") from None
        return BlobInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    async def get_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        path = self.local_path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise BlobNotFound("the image's object is missing") from None
        with handle:
            await asyncio.to_thread(handle.seek, start)
            left = end - start
            while left > 0 and (chunk := await asyncio.to_thread(handle.read, min(_CHUNK, left))):
                left -= len(chunk)
                yield chunk


def _close_opened(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _check_key(key: str) -> None:
    if _KEY_RE.fullmatch(key) is None or ".." in key:
        raise Invalid("malformed object key", code="invalid_key")


class _TempFile:
    """An upload's file under `.tmp`, created by its first write; every method runs in a worker
    thread, one at a time."""

    def __init__(self, directory: Path):
        self._directory = directory
        self._path: Path | None = None
        self._handle: Any = None

    def write(self, pieces: list[bytes]) -> None:
        if self._handle is None:
            fd, name = tempfile.mkstemp(dir=self._directory, prefix="upload-")
            self._path = Path(name)
            self._handle = os.fdopen(fd, "wb")
        self._handle.writelines(pieces)

    def publish(self, pieces: list[bytes], target: Callable[[], Path]) -> None:
        """Write the rest, make it durable and link it under the key's path (`target`)."""
        path = target()
        self.write(pieces)
        _flush_and_sync(self._handle)
        self._handle.close()
        assert self._path is not None
        _publish(self._path, path)

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def _flush_and_sync(handle: object) -> None:
    handle.flush()  # type: ignore[attr-defined]
    os.fsync(handle.fileno())  # type: ignore[attr-defined]


def _entries(folder: Path) -> list[tuple[str, bool, int, float]]:
    found = []
    with os.scandir(folder) as scan:
        for entry in scan:
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            found.append((entry.name, entry.is_dir(), stat.st_size, stat.st_mtime))
    return found


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another rendition), or gone already


def _publish(tmp: Path, target: Path) -> None:
    # A hard link, unlike a rename, refuses to replace an existing file: keys are never reused.
    try:
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, target)
                break
            except FileNotFoundError:
                # A delete removed the (empty) rendition directory between mkdir and link.
                if attempt == 2:
                    raise
    except FileExistsError:
        raise Conflict("an object with that key exists", code="object_exists") from None
    finally:
        tmp.unlink(missing_ok=True)
    # The new name is durable only once its directory is.
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
