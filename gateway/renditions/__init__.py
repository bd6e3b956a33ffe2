"""Renditions: resized and converted images made on request, stored once beside the original
(`<collection>/_renditions/<id>/<spec>.<ext>`) and served by presigned redirect like it."""
