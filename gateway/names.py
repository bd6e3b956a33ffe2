"""What a collection name and an image id may be: checked where they enter, so no name can step
outside its key prefix and no id reaches a database unchecked."""

from __future__ import annotations

import re

from gateway.errors import Invalid, NotFound

COLLECTION_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
IMAGE_ID_RE = re.compile(r"[0-9a-fA-F]{24}")


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
