"""Every route the gateway serves, once, each with a name (links are built with `url_for`).

A handler routed on several paths is documented at its first route, and lists the others as
aliases (see `gateway.api.openapi`); so each alias below follows its main route.
"""

from __future__ import annotations

from aiohttp import web

from gateway import metrics
from gateway.api import collections, compat, datasets, docs, feeds, gallery, health, openapi, signed_downloads, tus, uploads, v1
from gateway.config import Config
from gateway.keys import METRICS
from gateway.middlewares import Handler
from gateway.storage.filesystem import DOWNLOAD_ROUTE, UPLOAD_ROUTE

# The original service answered under /images, /documents and /items alike; the first is the main one.
IMAGE_NOUNS = ("images", "documents", "items")


def _add(app: web.Application, path: str, name: str, **methods: Handler) -> None:
    """One named resource with a handler per method (`get` also answers HEAD, unless a `head`
    of its own is given)."""
    resource = app.router.add_resource(path, name=name)
    for method, handler in methods.items():
        if method == "get" and "head" not in methods:
            resource.add_route("HEAD", handler)  # as `add_get` does
        resource.add_route(method.upper(), handler)


def setup_routes(app: web.Application, config: Config) -> None:
    # The original storage service ran on Express, whose routing ignores one trailing slash, and
    # seed 000 shows both forms: their routes also answer with one (`.../images/`). Those come
    # after all the others, so resolving a usual path never tries them.
    with_slash: list[tuple[str, str, dict[str, Handler]]] = []

    def add(path: str, name: str, *, slash: bool = False, **methods: Handler) -> None:
        _add(app, path, name, **methods)
        if slash:
            with_slash.append((path + "/", name + ".slash", methods))

    # The service, its description and operations.
    add("/", "service", get=collections.app_info)
    add("/openapi.json", "openapi", get=openapi.openapi_json)
    add("/docs", "docs", get=docs.docs)
    add("/docs/{file}", "docs_file", get=docs.docs_file)
    add("/gallery", "gallery", get=gallery.index)
    add("/gallery/", "gallery_slash", get=gallery.index)
    add("/gallery/{name:.+}", "gallery_file", get=gallery.asset)
    add("/health", "health", get=health.health)
    add("/ready", "ready", get=health.ready)
    # metrics.py stays below the API, so its handler gets its operation here.
    add("/metrics", "metrics", get=health.METRICS_OPERATION(metrics.exposition_handler(app[METRICS])))
    add("/events", "events", get=feeds.all_events)

    # Seed 001: collections of images. The image routes come first, the busiest first: aiohttp
    # tries the routes under one static prefix (`/collections`) in the order they were added,
    # each try a regex match, so a download redirect (what an `<img>` asks for) is matched at
    # the first try and a document at the second. No two of these match the same path, so the
    # order changes nothing else. (A handler's first route is its documented one: the document
    # before `/info`, the download before `/file`.)
    for noun in IMAGE_NOUNS:
        base = f"/collections/{{collection}}/{noun}"
        add(base + "/{image_id}/image", f"{noun}.download", slash=True, get=collections.download)
        add(
            base + "/{image_id}", f"{noun}.image", slash=True, get=collections.get_image, put=collections.replace_properties,
            patch=collections.patch_properties, delete=collections.delete_image,
        )  # fmt: skip
        add(
            base, noun, slash=True, get=collections.list_images, post=collections.upload_image,
            patch=compat.patch_matching, delete=compat.delete_matching,
        )  # fmt: skip
        add(base + "/{image_id}/info", f"{noun}.info", slash=True, get=collections.get_image)
        add(base + "/{image_id}/file", f"{noun}.file", slash=True, get=collections.download)
    add("/collections", "collections", slash=True, get=collections.list_collections)
    add("/collections/{collection}", "collection", slash=True, get=collections.get_collection, delete=collections.delete_collection)
    add("/collections/{collection}/events", "collection_events", get=feeds.collection_events)
    add("/collections/{collection}/export", "export_dataset", slash=True, get=datasets.export_dataset)
    add("/collections/{collection}/import", "import_dataset", slash=True, post=datasets.import_dataset)
    # The later releases' property discovery.
    add("/collections/{collection}/fields", "fields", slash=True, get=compat.list_fields)
    add("/collections/{collection}/fields/{key}", "field_values", slash=True, get=compat.field_values)
    # Issue 12: resumable uploads (tus 1.0.0), and direct uploads to the object store. tus
    # clients follow the Location they are given, so these take no trailing slash.
    add("/collections/{collection}/tus", "tus", options=tus.options, post=tus.create)
    add("/collections/{collection}/tus/{upload_id}", "tus.upload", head=tus.head, patch=tus.patch, delete=tus.terminate)
    add("/collections/{collection}/uploads", "direct_uploads", post=uploads.start_direct_upload)
    add("/collections/{collection}/uploads/{upload_id}/complete", "direct_upload.complete", post=uploads.complete_direct_upload)

    # Seed 000: /v1/images over the default collection, and the same with a trailing slash;
    # tus first: /v1/images/tus is no image id.
    add("/v1/images/tus", "v1.tus", options=tus.v1_options, post=tus.v1_create)
    add("/v1/images/tus/{upload_id}", "v1.tus.upload", head=tus.v1_head, patch=tus.v1_patch, delete=tus.v1_terminate)
    add("/v1/images", "v1.images", slash=True, get=v1.list_images, post=v1.create_image)
    add("/v1/images/{image_id}", "v1.image", slash=True, get=v1.get_image, delete=v1.delete_image)
    add("/v1/images/{image_id}/image", "v1.download", slash=True, get=v1.download)

    if config.storage.backend == "filesystem":
        # The store's files are served here, through the LOCAL_FILES it supplies.
        add(DOWNLOAD_ROUTE + "{key:.+}", "signed_download", get=signed_downloads.serve_object)
        # ... and the direct-upload forms S3 would take itself, through the same signer.
        add(UPLOAD_ROUTE + "{key:.+}", "signed_upload", post=uploads.receive_form)

    for path, name, methods in with_slash:
        _add(app, path, name, **methods)
