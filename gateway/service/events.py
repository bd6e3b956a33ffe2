"""Live events (`upload`, `update`, `delete`) delivered to WebSocket subscribers on every replica.

Every replica appends what its service did (through `EventWriter`, a service listener) to the one
shared event log in the metadata database (`metadata.base.EventLog`); each replica's `EventHub`
follows that log and fans the events out to its own subscribers. Following means the log's push
feed where the database offers one (a MongoDB replica set's change stream), else polling
`seq > last` every `poll_interval_seconds`: FerretDB v1 does not implement `$changeStream`, and
SQLite shared by several processes on one host has no notification at all. The service never
sees any of this: it calls its listeners. Nothing here knows which database runs.

Nobody following, nobody needs the events: a hub with subscribers holds a lease in the log
(`listen_until`), and writers skip their batches while the lease they last read (at most
`LISTENER_CHECK_SECONDS` ago) has run out, which saves an upload the log's two commands. A new
subscription is announced (`started`) only once the lease has been up for that long, so every
writer has read it by then: whatever is acknowledged after the announcement is written.

MongoDB hands out sequence numbers before the insert, so two writers may commit 6 before 5. The
poller therefore delivers everything new but advances its mark only over contiguous numbers, and
gives up on a hole after `GAP_GRACE_SECONDS` (a writer that died between the two steps).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from gateway.metadata.base import Event, EventFeed, EventLog, ImageRecord

log = logging.getLogger(__name__)

GAP_GRACE_SECONDS = 5.0
# How long a writer trusts the listeners' lease it read; a subscription waits a little longer
# than this before it is announced (monotonic clocks of two processes may run a little apart).
LISTENER_CHECK_SECONDS = 0.5
_CHECK_MARGIN = 1.2
# The lease a hub with subscribers holds, renewed every third of it.
LISTENER_LEASE_SECONDS = 60.0
_BATCH = 500
_QUEUE_SIZE = 256


class EventWriter:
    """The service's listener: requests hand their events over and go on; one task per process
    writes them in batches. A request never waits for the event log, and a burst of uploads
    costs one sequence draw and one insert. Events still queued at shutdown are written first."""

    def __init__(self, events: EventLog, *, max_pending: int = 10_000, max_batch: int = 256):
        self._log = events
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, ImageRecord]] = asyncio.Queue(max_pending)
        self.dropped = 0
        self.skipped = 0
        self._lease_until = 0.0
        self._lease_read_at: float | None = None

    async def publish(self, kind: str, record: ImageRecord) -> None:
        try:
            self._queue.put_nowait((kind, record))
        except asyncio.QueueFull:
            # The event log is far behind (or down); the images themselves are safe.
            self.dropped += 1
            log.warning("event log backlog full; %s of %s/%s not published", kind, record.collection, record.id)

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def flush(self) -> None:
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(self._max_batch, self._queue.qsize()))]
            await self._write(batch)

    async def _followed(self) -> bool:
        """Whether anyone follows the log, from a lease read at most `LISTENER_CHECK_SECONDS`
        ago (read again when older). Taken at the start of the read: the answer is at least
        that fresh."""
        now = time.monotonic()
        if self._lease_read_at is None or now - self._lease_read_at >= LISTENER_CHECK_SECONDS:
            try:
                self._lease_until = await self._log.listening_until()
            except Exception:
                return True  # unknown: written, as before leases
            self._lease_read_at = now
        return self._lease_until > time.time()

    async def _write(self, batch: list[tuple[str, ImageRecord]]) -> None:
        if not await self._followed():
            self.skipped += len(batch)
            return
        try:
            await self._log.append_many(batch)
        except Exception as exc:
            self.dropped += len(batch)
            log.warning("event log write failed (%s); %d events not published", exc.__class__.__name__, len(batch))


class Subscription:
    def __init__(self, hub: EventHub, collection: str | None):
        self._hub = hub
        self.collection = collection
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(_QUEUE_SIZE)

    def offer(self, event: Event) -> None:
        if self.collection is not None and event.record.collection != self.collection:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A subscriber this far behind is cut off (None ends its feed); it may reconnect.
            self._hub.unsubscribe(self)
            self.queue.get_nowait()
            self.queue.put_nowait(None)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while (event := await self.queue.get()) is not None:
            yield event


class EventHub:
    """Follows the event log while anyone subscribes and hands each event to the subscribers."""

    def __init__(self, events: EventLog, poll_interval: float):
        self.log = events
        self.poll_interval = poll_interval
        self.mode = "idle"
        self._streams = True
        self._subscribers: set[Subscription] = set()
        # When this hub's unbroken run of leases began (monotonic), and until when the last one holds.
        self._leased_since: float | None = None
        self._leased_until = 0.0
        self._wanted = asyncio.Event()
        self._started = asyncio.Event()
        self.sockets: weakref.WeakSet[Any] = weakref.WeakSet()

    def subscribe(self, collection: str | None) -> Subscription:
        subscription = Subscription(self, collection)
        self._subscribers.add(subscription)
        self._wanted.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        if not self._subscribers:
            self._wanted.clear()

    async def started(self) -> None:
        """Wait until events written from now on will be delivered to current subscribers."""
        await self._started.wait()

    def _deliver(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            subscription.offer(event)

    async def _lease(self) -> None:
        """Hold the listeners' lease, renewed while anyone subscribes; from its start, wait until
        every writer has read it (see the module's docstring)."""
        now = time.monotonic()
        if self._leased_since is None or now > self._leased_until - LISTENER_LEASE_SECONDS / 2:
            self._leased_since = None  # lapsed, or about to: a new run begins
        await self.log.listen_until(time.time() + LISTENER_LEASE_SECONDS)
        self._leased_until = now + LISTENER_LEASE_SECONDS
        if self._leased_since is None:
            self._leased_since = now
        wait = self._leased_since + LISTENER_CHECK_SECONDS * _CHECK_MARGIN - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LISTENER_LEASE_SECONDS / 3)
            try:
                await self.log.listen_until(time.time() + LISTENER_LEASE_SECONDS)
                self._leased_until = time.monotonic() + LISTENER_LEASE_SECONDS
            except Exception as exc:
                log.warning("event listeners' lease not renewed (%s)", exc.__class__.__name__)

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            renewing: asyncio.Task[None] | None = None
            try:
                await self._lease()
                renewing = asyncio.create_task(self._renew())
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database is away; subscribers stay, and following resumes from now.
                log.warning("event feed interrupted (%s); retrying", exc.__class__.__name__)
                self._started.clear()
                await asyncio.sleep(self.poll_interval)
            finally:
                if renewing is not None:
                    renewing.cancel()

    async def _follow(self) -> None:
        feed = await self.log.follow() if self._streams else None
        if feed is None:
            # A database without a push feed will not grow one: from now on, always poll.
            self._streams = False
            await self._poll()
            return
        try:
            await self._stream(feed)
        finally:
            await feed.aclose()

    async def _stream(self, feed: EventFeed) -> None:
        # The feed is open once `follow` returns it, so what is written from now on arrives.
        self.mode = "change_stream"
        self._started.set()
        async for event in feed:
            self._deliver(event)
            if not self._subscribers:
                break
        self._started.clear()
        self.mode = "idle"

    async def _poll(self) -> None:
        low = await self.log.latest()
        seen: set[int] = set()
        gap_since: float | None = None
        self.mode = "polling"
        self._started.set()
        while self._subscribers:
            events = await self.log.read_after(low, _BATCH)
            for event in events:
                if event.seq not in seen:
                    seen.add(event.seq)
                    self._deliver(event)
            while low + 1 in seen:
                low += 1
                seen.discard(low)
            if seen:
                now = time.monotonic()
                gap_since = gap_since or now
                if now - gap_since > GAP_GRACE_SECONDS:
                    low = min(seen) - 1
                    gap_since = None
                    continue
            else:
                gap_since = None
            if len(events) < _BATCH:
                await asyncio.sleep(self.poll_interval)
        self._started.clear()
        self.mode = "idle"
