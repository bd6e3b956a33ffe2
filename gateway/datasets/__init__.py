"""Dataset export and import: a zip (or a directory) of images with their metadata.

An export holds one member per image, `<id>.<ext>`, stored as it is (images are compressed
already), then `metadata.jsonl` (our documents, one per line) and `mongodb_data.json` (the original
service's shape: a JSON array of `_id`, `time`, `image` = the member's name, and the properties at
top level). The zip is written to a non-seekable stream member by member, so it is never built in
memory or on disk.

An import reads our export or the original service's (a flat zip of images and
`mongodb_data.json`; its `mongodb_data.xlsx` is ignored). Ids and times are kept, so importing
the same archive twice changes nothing, and an interrupted import resumes: an id already stored
with the same SHA-256 is skipped. Every image goes through `ImageService`'s upload, so it is
validated and written in the same order as any other upload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

from gateway.errors import Invalid

log = logging.getLogger(__name__)

METADATA = "metadata.jsonl"
ORIGINAL_METADATA = "mongodb_data.json"
CHUNK = 256 * 1024
# Entries reported one by one in an import summary; beyond that, only counted.
REPORTED = 1000
# Metadata files are parsed whole (the original's is one JSON array), so they have their own cap.
MAX_METADATA_BYTES = 512 * 1024 * 1024
# Images hardly compress; a member that expands more than this is a bomb, not a dataset.
MAX_RATIO = 100
MAX_MEMBERS = 1_000_000


@dataclass(frozen=True)
class ArchiveLimits:
    member_bytes: int
    # The uncompressed total of every member together.
    total_bytes: int
    members: int = MAX_MEMBERS
    ratio: int = MAX_RATIO


def safe_member_name(name: str) -> str:
    """A relative POSIX name with no `..`, no drive, no backslash: refused otherwise."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or ".." in path.parts
        or (path.parts and ":" in path.parts[0])
    ):
        raise Invalid(f"the archive member name {name!r} is not a safe relative path", code="unsafe_member_name")
    return name

