"""The service layer: everything between the HTTP handlers and the two stores.

`core.ImageService` owns write order, compensation and authorization (owner scope); the other
modules are workflows built on it (`bulk`, `discovery`, `reconcile`), the event fan-out it
writes to (`events`); its per-process memory is `gateway.caches`. Handlers import the names below;
the workflows import `core` directly, so this package's import runs nothing but `core`.
"""

from gateway.service.core import EVERYONE, ImageService, Page, Scope, Upload, sanitize_filename

__all__ = ["EVERYONE", "ImageService", "Page", "Scope", "Upload", "sanitize_filename"]
