"""Where an import reads from: a zip on disk, checked before it is read, or a directory."""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path
from typing import IO, Any, Protocol

from gateway.errors import Invalid, TooLarge

from gateway.datasets import ArchiveLimits, safe_member_name

log = logging.getLogger(__name__)


# --- import sources ---------------------------------------------------------------------------


class ImportSource(Protocol):
    def has(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> io.BufferedReader: ...


class ZipSource:
    """A zip on disk, checked before anything is read: member names, count, declared sizes and
    compression ratios. While reading, a member that yields more than it declared is refused."""

    def __init__(self, path: Path, limits: ArchiveLimits):
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise Invalid(f"the archive is not a readable zip file ({exc})", code="invalid_archive") from None
        self.limits = limits
        infos = self._zip.infolist()
        if len(infos) > limits.members:
            raise TooLarge(f"archives hold at most {limits.members} members", code="archive_too_large")
        total = 0
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.is_dir():
                continue
            safe_member_name(info.filename)
            if info.flag_bits & 0x1:
                raise Invalid(f"member {info.filename!r} is encrypted", code="invalid_archive")
            if info.file_size > limits.ratio * max(info.compress_size, 1) and info.file_size > 1024 * 1024:
                raise Invalid(f"member {info.filename!r} expands {info.file_size // max(info.compress_size, 1)} times: refused as a zip bomb", code="zip_bomb")
            total += info.file_size
            self._infos[info.filename] = info
        if total > limits.total_bytes:
            raise TooLarge(f"the archive expands to more than {limits.total_bytes} bytes", code="archive_too_large")

    def has(self, name: str) -> bool:
        return name in self._infos

    def size(self, name: str) -> int:
        return self._infos[name].file_size

    def open(self, name: str) -> io.BufferedReader:
        # Buffered, as a file on disk is, so both sources hand out the same kind of reader.
        return io.BufferedReader(_Bounded(self._zip.open(self._infos[name]), self._infos[name].file_size, name))

    def close(self) -> None:
        self._zip.close()


class _Bounded(io.RawIOBase):
    """A member's reader that refuses to yield more than the member declared."""

    def __init__(self, inner: IO[bytes], declared: int, name: str):
        self._inner = inner
        self._left = declared
        self._name = name

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._inner.read(self._left + 1 if size < 0 else min(size, self._left + 1))
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise Invalid(f"member {self._name!r} is corrupt ({exc})", code="corrupt_member") from None
        self._left -= len(data)
        if self._left < 0:
            raise Invalid(f"member {self._name!r} is larger than its header declares", code="zip_bomb")
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class DirSource:
    """An export unpacked into a directory (or written there by `gateway export C DIR`)."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def _path(self, name: str) -> Path:
        path = (self.root / safe_member_name(name)).resolve()
        if not path.is_relative_to(self.root):
            raise Invalid(f"the member name {name!r} leaves the directory", code="unsafe_member_name")
        return path

    def has(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def open(self, name: str) -> io.BufferedReader:
        return self._path(name).open("rb")

    def close(self) -> None:
        return None


