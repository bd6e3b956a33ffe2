"""New image ids: ObjectId's layout without its library, unique within and across processes."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

from bson import ObjectId

from gateway.names import IMAGE_ID_RE, new_image_id


def test_new_ids_are_24_lowercase_hex_digits_and_valid_image_ids() -> None:
    ident = new_image_id()
    assert IMAGE_ID_RE.fullmatch(ident) and ident == ident.lower()


def test_new_ids_read_as_object_ids_made_now() -> None:
    before = int(time.time())
    ident = new_image_id()
    after = int(time.time())
    assert before <= ObjectId(ident).generation_time.timestamp() <= after


def test_ids_never_repeat_and_grow_in_creation_order() -> None:
    made = [new_image_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    # Seconds first, then the counter: each id is greater than the one before, except once
    # where the 3-byte counter may wrap within a second.
    descents = sum(1 for earlier, later in zip(made, made[1:]) if later < earlier)
    assert descents <= 1


def _child_id(queue: Any) -> None:
    queue.put(new_image_id())


def test_a_forked_worker_draws_its_own_random_part() -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child_id, args=(queue,))
    process.start()
    child = queue.get(timeout=30)
    process.join(timeout=30)
    assert child[8:18] != new_image_id()[8:18]
