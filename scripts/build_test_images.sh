#!/usr/bin/env bash
# Build the small images pnr's tests and examples use, without any registry: a static busybox
# (httpd, nc, sh, sleep, wget) imported as pnr-test/busybox:1. Cached: does nothing if it exists.
# Also pnr-test/busybox-health:1: the same with a Docker HEALTHCHECK (healthy once /tmp/healthy exists),
# for the `docker` probe kind.
set -euo pipefail
IMAGE=pnr-test/busybox:1
HEALTH_IMAGE=pnr-test/busybox-health:1
build_health_image() {
  if docker image inspect "$HEALTH_IMAGE" >/dev/null 2>&1 && [ "${1:-}" != "--force" ]; then
    echo "test image $HEALTH_IMAGE is present"
    return 0
  fi
  printf '%s\n' "FROM $IMAGE" \
    'HEALTHCHECK --interval=500ms --timeout=2s --retries=1 CMD ["sh", "-c", "test -f /tmp/healthy"]' \
    'LABEL pnr.test=1' | docker build -q -t "$HEALTH_IMAGE" - >/dev/null
  echo "built test image $HEALTH_IMAGE"
}
if docker image inspect "$IMAGE" >/dev/null 2>&1 && [ "${1:-}" != "--force" ]; then
  echo "test image $IMAGE is present"
  build_health_image "${1:-}"
  exit 0
fi
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
  else
    echo "need a static busybox at /bin/busybox (Debian: apt-get install busybox-static)" >&2
    exit 1
  fi
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/www" "$dir/tmp" "$dir/etc"
cp /bin/busybox "$dir/bin/busybox"
for tool in sh ash httpd nc sleep wget echo cat ls env printf true false kill date hostname ps mkdir rm touch seq; do
  ln -s busybox "$dir/bin/$tool"
done
echo '<h1>pnr test page</h1>' > "$dir/www/index.html"
echo 'ok' > "$dir/www/health"
echo 'root:x:0:0:root:/:/bin/sh' > "$dir/etc/passwd"
tar -C "$dir" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["httpd","-f","-p","80","-h","/www"]' \
  -c 'LABEL pnr.test=1' - "$IMAGE" >/dev/null
echo "built test image $IMAGE"
build_health_image --force
