#!/usr/bin/env bash
# Podman as the container engine on a Debian machine without Docker: installs it (as root),
# writes the engine settings this kind of VM needs, and serves the Docker-compatible API on a
# socket that testcontainers and podman-compose use.
#
#   deploy/podman/setup.sh install   apt-get install podman and friends, write containers.conf
#   deploy/podman/setup.sh service   start the API socket if it does not answer (idempotent)
#   deploy/podman/setup.sh env       print the exports tests need (eval "$(... env)")
#   deploy/podman/setup.sh all       install + service
#
# Settings (env): PODMAN_SOCKET (/run/podman/podman.sock).
set -euo pipefail

socket=${PODMAN_SOCKET:-/run/podman/podman.sock}
conf=/etc/containers/containers.conf
log() { printf '[podman] %s\n' "$*" >&2; }

install() {
  local need=()
  for cmd in podman runc debootstrap netavark aardvark-dns; do
    case $cmd in
      netavark | aardvark-dns) [ -x "/usr/lib/podman/$cmd" ] || need+=("$cmd") ;;
      *) command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd") ;;
    esac
  done
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { log "needs root to install: ${need[*]}"; exit 1; }
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq podman runc debootstrap netavark aardvark-dns >/dev/null
  fi
  # crun refuses this VM's hybrid cgroups, and the default nofile/nproc limits exceed what the
  # VM grants (a container then fails to start), so cap them at the hard limits we have.
  local nofile nproc
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
  nofile=$((nofile < 20000 ? nofile : 20000))
  nproc=$(cat /proc/sys/kernel/pid_max); nproc=$((nproc < 32768 ? nproc : 32768))
  local wanted
  wanted=$(printf '%s\n' \
    '# Written by deploy/podman/setup.sh' \
    '[containers]' \
    "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]" \
    '' \
    '[engine]' \
    'runtime = "runc"' \
    'events_logger = "file"' \
    'cgroup_manager = "cgroupfs"')
  if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$wanted" ]; then
    if [ -f "$conf" ] && ! grep -q 'deploy/podman/setup.sh' "$conf"; then
      cp "$conf" "$conf.before-dcsp"
      log "kept the previous $conf as $conf.before-dcsp"
    fi
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$wanted" > "$conf"
    log "wrote $conf"
  fi
}

answers() { curl -sf --max-time 5 --unix-socket "$socket" http://d/_ping >/dev/null 2>&1; }

service() {
  if answers; then return 0; fi
  command -v podman >/dev/null || { log "podman not installed: run $0 install"; exit 1; }
  mkdir -p "$(dirname "$socket")" /var/log/dcsp
  log "starting the Docker-compatible API on unix://$socket"
  # From / : conmon inherits the service's working directory, and a service started inside a
  # checkout that is later deleted fails every container start ("Failed to get working directory").
  (cd / && nohup podman system service --time=0 "unix://$socket" >/var/log/dcsp/podman-service.log 2>&1 </dev/null &)
  for _ in $(seq 1 50); do answers && { log "API answers"; return 0; }; sleep 0.2; done
  log "the podman API did not answer; see /var/log/dcsp/podman-service.log"; exit 1
}

env_exports() {
  cat <<EOF
export DOCKER_HOST=unix://$socket
export TESTCONTAINERS_RYUK_DISABLED=true
export TESTCONTAINERS_CONNECTION_MODE=docker_host
EOF
}

case "${1:-}" in
  install) install ;;
  service) service ;;
  env) env_exports ;;
  all) install; service ;;
  *) echo "usage: $0 {install|service|env|all}" >&2; exit 2 ;;
esac
