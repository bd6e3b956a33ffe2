"""The import and export workflows, one each, for the HTTP routes and the CLI alike: the archive
limits come from the configuration here, and the owner scope is checked here."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.datasets import ArchiveLimits
from gateway.datasets.export import ExportTarget, export_collection
from gateway.datasets.importer import ImportSummary, import_archive
from gateway.datasets.progress import Progress
from gateway.datasets.sources import DirSource, ZipSource
from gateway.service import EVERYONE, ImageService, Scope

DEFAULT_CONCURRENCY = 4


class Datasets:
    def __init__(self, images: ImageService):
        self.images = images
        limits = images.config.limits
        self.limits = ArchiveLimits(member_bytes=limits.max_upload_bytes, total_bytes=limits.max_archive_bytes)

    async def import_path(
        self, collection: str, path: Path, *, owner: str | None = None, concurrency: int = DEFAULT_CONCURRENCY, progress: Progress | None = None
    ) -> ImportSummary:
        """Import a zip, or a directory, of our export or the original service's into `collection`."""
        source: ZipSource | DirSource = DirSource(path) if path.is_dir() else await asyncio.to_thread(ZipSource, path, self.limits)
        try:
            return await import_archive(self.images, collection, source, owner=owner, concurrency=concurrency, progress=progress)
        finally:
            source.close()

    async def check_export(self, collection: str, *, scope: Scope = EVERYONE) -> None:
        """Refuse an export before any of it is sent: `Forbidden` to one user (an export holds
        every user's images), `NotFound` for a missing collection."""
        scope.whole_collection("exporting")
        await self.images.collection_stats(collection)

    async def export(self, collection: str, target: ExportTarget, *, progress: Progress | None = None) -> dict[str, int]:
        """Write the collection into `target` (after `check_export`); counts of what was written."""
        return await export_collection(self.images, collection, target, progress)
