#!/usr/bin/env bash
# Local stand-ins for the public base images the Dockerfile and docker-compose.yml name, for a
# machine with podman but no image registry (CI here). Each is made from Debian's own packages and
# tagged with exactly the name the Dockerfile / compose file expects, so those files stay unchanged:
#
#   python:<PYTHON_VERSION>-slim-bookworm   debootstrap minbase + Debian's python3 (3.11) and a
#                                           `python` on PATH, like the official image
#   postgres:17-bookworm                    Debian's postgresql (15 on bookworm, see the README)
#                                           behind an entrypoint honouring POSTGRES_USER/_DB/_PASSWORD
#   nginx:1.27-alpine                       Debian's nginx, reading /etc/nginx/conf.d/*.conf
#
#   deploy/local-images/make-images.sh python|postgres|nginx|all
#   deploy/local-images/make-images.sh names     the three image names, one a line
#   deploy/local-images/make-images.sh mirror    the Debian mirror debootstrap would use
#
# Only used when asked for (scripts/container-smoke.sh --make-base, FACEID_LOCAL_BASE=1); with a
# registry, the official images are pulled instead. The Debian mirror is whatever this machine's
# apt sources use (read at run time). Knobs: PODMAN (default podman), FORCE=1 rebuilds images that
# already exist, APT_ETC (/etc/apt) where the apt sources are read from.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PODMAN="${PODMAN:-podman}"
PODMAN_RUNTIME="${PODMAN_RUNTIME:-runc}"
SUITE=bookworm
APT_ETC="${APT_ETC:-/etc/apt}"
PYTHON_VERSION="$(sed -n 's/^ARG PYTHON_VERSION=//p' "$ROOT/Dockerfile" | head -n 1)"
PYTHON_IMAGE="python:${PYTHON_VERSION}-slim-bookworm"
# The plain Debian base the postgres and nginx stand-ins build on (never pushed anywhere).
DEBIAN_IMAGE="localhost/faceid-local-debian:${SUITE}"
PG_IMAGE="$(sed -n 's/^ *image: *\(postgres:.*\)$/\1/p' "$ROOT/docker-compose.yml" | head -n 1)"
NGINX_IMAGE="$(sed -n 's/^ *image: *\(nginx:.*\)$/\1/p' "$ROOT/docker-compose.yml" | head -n 1)"

log() { echo "[make-images] $*" >&2; }
die() { echo "make-images: $*" >&2; exit 1; }

have_image() { [[ "${FORCE:-0}" != 1 ]] && "$PODMAN" image exists "$1"; }

# The first Debian mirror in this machine's apt sources that serves $SUITE's main component
# (deb822 .sources files and one-line .list files both), so no host is written down here.
debian_mirror() {
  local f
  for f in "$APT_ETC"/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    # deb822: paragraphs of "Key: value"; a URIs line applies to its paragraph's Suites.
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; ok = 0; deb = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^#/) continue
          if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb = 1
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1 }
        }
        if (deb && ok && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
  for f in "$APT_ETC"/sources.list "$APT_ETC"/sources.list.d/*.list; do
    [[ -f "$f" ]] || continue
    awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f"
  done
}

make_python() {
  if have_image "$PYTHON_IMAGE"; then log "$PYTHON_IMAGE exists"; return; fi
  command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
  local mirror rootfs
  mirror="$(debian_mirror | head -n 1)"
  [[ -n "$mirror" ]] || die "no Debian $SUITE mirror in $APT_ETC/sources.list{,.d/*}"
  rootfs="$(mktemp -d /var/tmp/faceid-rootfs.XXXXXX)"
  # shellcheck disable=SC2064  # expand now: the path is fixed
  trap "rm -rf '$rootfs'" RETURN
  log "debootstrap $SUITE (minbase + python3) from the machine's apt mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
    "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 30 "$rootfs.log" >&2; die "debootstrap failed"; }
  rm -f "$rootfs.log"
  # The official image has `python` on PATH (/usr/local/bin); so does this one.
  ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
  # Slim like the official image: no apt lists, caches, docs or man pages.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log
  log "import as $PYTHON_IMAGE and $DEBIAN_IMAGE"
  tar -C "$rootfs" --numeric-owner -c . | "$PODMAN" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$PYTHON_IMAGE" >/dev/null
  "$PODMAN" tag "$PYTHON_IMAGE" "$DEBIAN_IMAGE"
}

build_standin() {  # NAME TAG
  local name="$1" tag="$2"
  if have_image "$tag"; then log "$tag exists"; return; fi
  "$PODMAN" image exists "$DEBIAN_IMAGE" || FORCE=0 make_python
  log "build $tag from Debian's $name (deploy/local-images/$name)"
  "$PODMAN" build --runtime "$PODMAN_RUNTIME" --pull=never --format docker \
    --build-arg "BASE=$DEBIAN_IMAGE" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -t "$tag" "$HERE/$name" >&2
}

case "${1:-all}" in
  python) make_python ;;
  postgres) build_standin postgres "$PG_IMAGE" ;;
  nginx) build_standin nginx "$NGINX_IMAGE" ;;
  all) make_python; build_standin postgres "$PG_IMAGE"; build_standin nginx "$NGINX_IMAGE" ;;
  names) printf '%s\n' "$PYTHON_IMAGE" "$PG_IMAGE" "$NGINX_IMAGE" ;;
  mirror)
    mirror="$(debian_mirror | head -n 1)"
    [[ -n "$mirror" ]] || die "no Debian $SUITE mirror in $APT_ETC/sources.list{,.d/*}"
    echo "$mirror"
    ;;
  *) die "usage: $0 python|postgres|nginx|all|names|mirror" ;;
esac
