#!/bin/sh
# Fetch Chart.js from the npm registry into the dashboard's vendor directory.
# The dashboard serves it from the package: store networks are often offline, so no CDN.
# Usage: scripts/vendor-chartjs.sh [version]   (needs npm; run from the repository root)
set -eu
VERSION="${1:-4.6.1}"
# sha256 of chart.js-4.6.1.tgz as the registry served it; a different version skips the check.
TARBALL_SHA256="9345dacdf4bb4c5d40321f4b9aafab6fe676d37a534fc0bc2d17c4c4e29c4f00"
DEST="cloud_api/dashboard/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "chart.js@$VERSION" >/dev/null)
tarball="$work/chart.js-$VERSION.tgz"
if [ "$VERSION" = "4.6.1" ]; then
    echo "$TARBALL_SHA256  $tarball" | sha256sum -c -
fi
tar -xzf "$tarball" -C "$work"
mkdir -p "$DEST"
cp "$work/package/dist/chart.umd.js" "$DEST/chart.umd.js"
cp "$work/package/LICENSE.md" "$DEST/chart.js.LICENSE.md"
echo "Chart.js $VERSION -> $DEST/chart.umd.js"
