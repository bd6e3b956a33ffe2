#!/bin/sh
# Vendor swagger-ui-dist (the files /docs serves) at a pinned version, from the npm registry:
# scripts/vendor-swagger-ui.sh [VERSION]. Only the files the page loads, the licence and notice.
set -eu
VERSION=${1:-5.35.0}
TARGET=$(dirname "$0")/../gateway/api/static/swagger-ui
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar xzf "swagger-ui-dist-$VERSION.tgz")
mkdir -p "$TARGET"
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE package.json; do
  cp "$WORK/package/$file" "$TARGET/$file"
done
echo "swagger-ui-dist $VERSION vendored into $TARGET"
