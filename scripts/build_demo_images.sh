#!/usr/bin/env bash
# Build the pnr three-tier demo images without any container registry:
#   pnr-demo/base:1   Debian bookworm minbase + redis-server nginx-light python3 (debootstrap + docker import)
#   pnr-demo/redis:1, pnr-demo/api:1, pnr-demo/web:1   docker build FROM base, see scripts/demo_images/
# Cached: images carry the label pnr.demo.recipe=<hash of the recipe section below + scripts/demo_images/*>;
# if all four already have the current hash, nothing is done. The rootfs tarball is cached under
# ${PNR_CACHE_DIR:-$HOME/.cache/pnr}/, so rebuilding after `docker rmi` skips debootstrap.
# Options: --force rebuilds the images (the rootfs tarball cache is still used).
# Env: PNR_CACHE_DIR, PNR_DEBIAN_MIRROR (overrides the mirror found in the apt sources).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGES_DIR="$HERE/demo_images"
CACHE_DIR="${PNR_CACHE_DIR:-$HOME/.cache/pnr}"
FORCE=0; [[ "${1:-}" == "--force" ]] && FORCE=1
log() { echo "build_demo_images: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# >>> recipe (everything up to "<<< recipe" is hashed into the pnr.demo.recipe label)
SUITE=bookworm
PACKAGES="redis-server nginx-light python3"
BASE=pnr-demo/base:1
SERVICES="redis api web"                         # -> pnr-demo/<name>:1 from scripts/demo_images/<name>/
provision_rootfs() {                             # $1 = debootstrapped rootfs; runs inside it as root
  local root=$1
  # Never start services from package postinst scripts inside the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod 755 "$root/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # No /proc, /dev/pts or sandbox user needed if apt neither allocates a pty nor drops privileges.
  local apt=(chroot "$root" apt-get -o Dpkg::Use-Pty=0 -o APT::Sandbox::User=root)
  "${apt[@]}" update -qq
  # shellcheck disable=SC2086  # $PACKAGES is a word list
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q --no-install-recommends $PACKAGES
  "${apt[@]}" clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/{doc,man,info,locale}/* \
         "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/etc/resolv.conf
}
# <<< recipe

recipe_hash() {  # $1 = "base" (recipe section only) or "all" (+ every file under demo_images/)
  { sed -n '/^# >>> recipe/,/^# <<< recipe/p' "${BASH_SOURCE[0]}"
    if [[ $1 == all ]]; then
      (cd "$IMAGES_DIR" && find . -type f ! -name README.md | LC_ALL=C sort | xargs sha256sum); fi
  } | sha256sum | cut -c1-16
}
HASH=$(recipe_hash all)
label_of() { docker image inspect --format '{{index .Config.Labels "pnr.demo.recipe"}}' "$1" 2>/dev/null || true; }

# --- Docker engine: use the running one; start one only where we can (root on Debian) ---------------
if ! docker info >/dev/null 2>&1; then
  [[ $EUID -eq 0 && -f /etc/debian_version ]] ||
    die "no usable Docker engine (docker info failed) and cannot install one here (needs root on Debian)"
  command -v dockerd >/dev/null || { log "installing docker.io"; apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; }
  log "starting dockerd"; (dockerd >/var/log/pnr-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || die "dockerd did not come up (see /var/log/pnr-dockerd.log)"
fi

# --- Up to date? ------------------------------------------------------------------------------------
uptodate=1
for name in base $SERVICES; do [[ "$(label_of "pnr-demo/$name:1")" == "$HASH" ]] || uptodate=0; done
if [[ $uptodate == 1 && $FORCE == 0 ]]; then echo "pnr demo images up to date (recipe $HASH)"; exit 0; fi

# --- Base rootfs tarball (cached per recipe hash) ---------------------------------------------------
mkdir -p "$CACHE_DIR"
TARBALL="$CACHE_DIR/demo-base-$SUITE-$(recipe_hash base).tar"
ROOTFS=""
cleanup() {  # unmount anything left under the rootfs (deepest first); delete it only if nothing is mounted
  [[ -n "$ROOTFS" && -d "$ROOTFS" ]] || return 0
  awk -v r="$ROOTFS" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  if awk -v r="$ROOTFS" 'index($2, r) == 1 {f=1} END {exit !f}' /proc/mounts; then
    log "WARNING: mounts remain under $ROOTFS; not deleting it"
  else rm -rf "$ROOTFS"; fi
}
trap cleanup EXIT; trap 'exit 130' INT TERM   # make signals go through the EXIT trap too

find_mirror() {  # first "deb" URI serving $SUITE in the apt sources (one-line .list and deb822 .sources)
  shopt -s nullglob
  { awk -v s="$SUITE" '$1 == "deb" { sub(/\[[^]]*\]/, ""); if ($3 == s) print $2 }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /dev/null 2>/dev/null
    awk -v s="$SUITE" -v RS= '{ t = u = su = ""
        n = split($0, L, "\n")
        for (i = 1; i <= n; i++) { if (L[i] ~ /^[ \t]*#/) continue
          split(L[i], F, ":"); k = tolower(F[1]); v = substr(L[i], length(F[1]) + 2)
          if (k == "types") t = v; else if (k == "uris") u = v; else if (k == "suites") su = v }
        if ((" " t " ") ~ / deb / && (" " su " ") ~ (" " s " ")) { split(u, U, " "); print U[1] } }' \
        /etc/apt/sources.list.d/*.sources /dev/null 2>/dev/null
  } | head -n1
}

if [[ -s "$TARBALL" ]]; then
  log "using cached rootfs $TARBALL"
else
  [[ $EUID -eq 0 ]] || die "building the base rootfs needs root (debootstrap/chroot)"
  command -v debootstrap >/dev/null || { log "installing debootstrap"; apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  MIRROR="${PNR_DEBIAN_MIRROR:-$(find_mirror)}"
  [[ -n "$MIRROR" ]] || die "no apt source for '$SUITE' found in /etc/apt/sources.list{,.d/}; set PNR_DEBIAN_MIRROR"
  ROOTFS=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  mkdir -p "$CACHE_DIR/debs"                      # keeps the .debs: a re-bootstrap after a recipe change is quicker
  log "debootstrap $SUITE from $MIRROR (a few minutes)"
  debootstrap --variant=minbase --cache-dir="$CACHE_DIR/debs" "$SUITE" "$ROOTFS" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 ||
    die "debootstrap failed, see $CACHE_DIR/debootstrap.log"
  log "installing $PACKAGES (log: $CACHE_DIR/provision.log)"
  provision_rootfs "$ROOTFS" >"$CACHE_DIR/provision.log" 2>&1   # no "|| die": that would disable set -e inside
  tar --numeric-owner -C "$ROOTFS" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  find "$CACHE_DIR" -maxdepth 1 -name 'demo-base-*.tar' ! -path "$TARBALL" -delete   # drop stale recipes
fi

# --- Images ------------------------------------------------------------------------------------------
old_ids=$(for name in $SERVICES base; do docker image inspect -f '{{.Id}}' "pnr-demo/$name:1" 2>/dev/null || true; done)
log "importing $BASE"
docker import --change "LABEL pnr.demo=1 pnr.demo.recipe=$HASH" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' "$TARBALL" "$BASE" >/dev/null
for name in $SERVICES; do
  log "building pnr-demo/$name:1"
  # Legacy builder: no buildx plugin here, and it uses the local base image without asking a registry.
  out=$(DOCKER_BUILDKIT=0 docker build --label pnr.demo=1 --label "pnr.demo.recipe=$HASH" \
    -t "pnr-demo/$name:1" "$IMAGES_DIR/$name" 2>&1) || { echo "$out" >&2; die "docker build of $name failed"; }
done
# Remove the images this script built before, now untagged (by id; fails harmlessly if a container uses one).
for id in $old_ids; do
  if [[ "$(docker image inspect -f '{{.RepoTags}}' "$id" 2>/dev/null)" == "[]" ]]; then docker rmi "$id" >/dev/null 2>&1 || true; fi
done
docker image ls --filter label=pnr.demo=1 --format '{{.Repository}}:{{.Tag}}  {{.Size}}' >&2
echo "pnr demo images built (recipe $HASH)"
