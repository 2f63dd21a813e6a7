#!/usr/bin/env bash
# Builds every image the project runs, with Podman and no container registry:
#
#   localhost/dcsp-debian:bookworm          debootstrap --variant=minbase (Debian's mirror)
#   localhost/dcsp-python-base:3.11-bookworm  + Debian's python3 (the BASE_IMAGE of the services)
#   localhost/dcsp-kafka:<kafka version>    + Debian's JRE + the broker jars from Maven Central
#   localhost/dcsp-postgres:15              + Debian's postgresql-15, official-image compatible
#   localhost/dcsp-{intake,triage,notifications,panels,police-receiver}:dev   the Dockerfiles
#
#   deploy/images/build.sh [base|services|all]      (default: all)
#
# Cached: the debootstrap root is kept as a tarball under $DCSP_CACHE (~/.cache/dcsp) and a
# base image is rebuilt only when its inputs change (a hash label); service images reuse
# Podman's layer cache, so a second run takes seconds.
# Settings (env): DCSP_CACHE, DEBIAN_MIRROR (http://deb.debian.org/debian), SERVICE_TAG (dev).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${DCSP_CACHE:-$HOME/.cache/dcsp}/images
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tag=${SERVICE_TAG:-dev}
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$repo/deploy/kafka/pom.xml")

DEBIAN_IMAGE=localhost/dcsp-debian:bookworm
PYTHON_IMAGE=localhost/dcsp-python-base:3.11-bookworm
KAFKA_IMAGE=localhost/dcsp-kafka:$kafka_version
POSTGRES_IMAGE=localhost/dcsp-postgres:15
SERVICES=(intake triage notifications panels)

log() { printf '[images] %s\n' "$*" >&2; }
command -v podman >/dev/null || { log "podman not found: run deploy/podman/setup.sh install"; exit 1; }
mkdir -p "$cache"

# The hash of a base image's inputs; the image is rebuilt only when it changes.
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }
current_hash() { podman image inspect --format '{{index .Labels "dcsp.inputs"}}' "$1" 2>/dev/null || true; }

debian() {
  local hash; hash=$(printf '%s %s' "$mirror" "v1" | sha256sum | cut -c1-16)
  [ "$(current_hash "$DEBIAN_IMAGE")" = "$hash" ] && return 0
  local tarball="$cache/debian-bookworm-minbase.tar"
  if [ ! -f "$tarball" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap not found: run deploy/podman/setup.sh install"; exit 1; }
    local root; root=$(mktemp -d "$cache/rootfs.XXXX")
    log "debootstrap bookworm (minbase) from $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    tar -C "$root" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  log "importing $DEBIAN_IMAGE"
  podman import --quiet --change "LABEL dcsp.inputs=$hash" --change 'CMD ["/bin/bash"]' \
    "$tarball" "$DEBIAN_IMAGE" >/dev/null
}

# build_base IMAGE CONTEXT_DIR CONTAINERFILE [inputs...]
build_base() {
  local image=$1 context=$2 file=$3; shift 3
  local hash; hash=$(inputs_hash "$file" "$@" <(current_hash "$DEBIAN_IMAGE"))
  if [ "$(current_hash "$image")" = "$hash" ]; then log "$image is up to date"; return 0; fi
  log "building $image"
  podman build --quiet --format docker --network host --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
    --label "dcsp.inputs=$hash" -f "$file" -t "$image" "$context" >/dev/null
}

python_base() {
  local ctx; ctx=$(mktemp -d)
  mkdir -p "$ctx/extra-ca"
  # Trust what the build machine trusts locally (e.g. a TLS-inspecting egress proxy's CA).
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ctx/extra-ca/"
  fi
  build_base "$PYTHON_IMAGE" "$ctx" "$here/python-base.Containerfile" $(find "$ctx/extra-ca" -type f | sort)
  rm -rf "$ctx"
}

kafka() {
  "$repo/deploy/kafka/kafka.sh" fetch
  local libs=${KAFKA_CACHE_DIR:-$HOME/.cache/dcsp/kafka}/$kafka_version/libs
  local ctx; ctx=$(mktemp -d "$cache/kafka-ctx.XXXX")
  cp -al "$libs" "$ctx/libs" 2>/dev/null || cp -a "$libs" "$ctx/libs"
  cp "$here/kafka/entrypoint.sh" "$here/kafka/log4j2.properties" "$ctx/"
  build_base "$KAFKA_IMAGE" "$ctx" "$here/kafka/Containerfile" \
    "$here/kafka/entrypoint.sh" "$here/kafka/log4j2.properties" <(ls "$libs")
  rm -rf "$ctx"
}

postgres() {
  build_base "$POSTGRES_IMAGE" "$here/postgres" "$here/postgres/Containerfile" "$here/postgres/entrypoint.sh"
}

base() { debian; python_base; kafka; postgres; }

services() {
  local name file image hash sources
  local base_id; base_id=$(podman image inspect --format '{{.Id}}' "$PYTHON_IMAGE")
  for name in "${SERVICES[@]}" police-receiver; do
    file="$repo/services/$name/Dockerfile"
    sources=("$repo/shared" "$repo/services/__init__.py" "$repo/services/$name")
    if [ "$name" = police-receiver ]; then
      file="$here/police-receiver.Dockerfile"
      sources=("$repo/demo/__init__.py" "$repo/demo/police_receiver.py")
    fi
    image="localhost/dcsp-$name:$tag"
    # Podman 4.3 re-commits a COPY --from layer on every build; skip builds whose inputs match.
    hash=$( (echo "$base_id"; cat "$file" "$repo/pyproject.toml" "$repo/.dockerignore";
             find "${sources[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z \
               | xargs -0 sha256sum | sed "s:$repo/::") | sha256sum | cut -c1-16)
    if [ "$(current_hash "$image")" = "$hash" ]; then log "$image is up to date"; continue; fi
    log "building $image"
    podman build --quiet --format docker --network host --build-arg "BASE_IMAGE=$PYTHON_IMAGE" \
      --label "dcsp.inputs=$hash" -f "$file" -t "$image" "$repo" >/dev/null
  done
  # Dangling layers of earlier builds add up on a long-lived machine.
  podman image prune -f >/dev/null 2>&1 || true
}

# The image names docker-compose.yml and the tests read (eval "$(deploy/images/build.sh env)").
env_exports() {
  cat <<EOF
export DCSP_KAFKA_IMAGE=$KAFKA_IMAGE
export DCSP_POSTGRES_IMAGE=$POSTGRES_IMAGE
export DCSP_IMAGE_REGISTRY=localhost/
export DCSP_IMAGE_TAG=$tag
EOF
}

case "${1:-all}" in
  base) base ;;
  services) services ;;
  all) base; services ;;
  env) env_exports ;;
  *) echo "usage: $0 [base|services|all|env]" >&2; exit 2 ;;
esac
