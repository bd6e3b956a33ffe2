"""What a collection name and an image id may be: checked where they enter, so no name can step
outside its key prefix and no id reaches a database unchecked. New ids are made here too."""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time

from gateway.errors import Invalid, NotFound

# As text too, for what shows or embeds them (the OpenAPI document, messages, object keys).
COLLECTION_PATTERN = r"[a-z0-9][a-z0-9._-]{0,62}"
# An id as requests may write it; stored and shown in lowercase, as `IMAGE_ID_PATTERN`.
IMAGE_ID_INPUT_PATTERN = r"[0-9a-fA-F]{24}"
IMAGE_ID_PATTERN = r"[0-9a-f]{24}"
COLLECTION_RE = re.compile(COLLECTION_PATTERN)
IMAGE_ID_RE = re.compile(IMAGE_ID_INPUT_PATTERN)


def collection_name(raw: str) -> str:
    if COLLECTION_RE.fullmatch(raw) is None or ".." in raw:
        raise Invalid(
            "collection names are 1-63 characters of a-z, 0-9, '.', '_' and '-', start with a letter "
            "or digit, and do not contain '..'",
            code="invalid_collection",
        )
    return raw


def image_id(raw: str) -> str:
    # A malformed id names no image: 404, as for an unknown one.
    if IMAGE_ID_RE.fullmatch(raw) is None:
        raise NotFound("no image with that id", code="image_not_found")
    return raw.lower()


_process_random = secrets.token_bytes(5)
_counter = itertools.count(secrets.randbelow(1 << 24))


def _new_process_random() -> None:
    # A forked worker (serve --workers) must not repeat its parent's ids.
    global _process_random
    _process_random = secrets.token_bytes(5)


os.register_at_fork(after_in_child=_new_process_random)


def new_image_id() -> str:
    """24 lowercase hex digits laid out as MongoDB's ObjectId, so ids made by the original
    service and by this one look alike and sort by creation time: 4 bytes of seconds since the
    epoch (big-endian), 5 random bytes fixed per process, a 3-byte counter."""
    count = next(_counter) & 0xFFFFFF
    return (int(time.time()).to_bytes(4, "big") + _process_random + count.to_bytes(3, "big")).hex()
