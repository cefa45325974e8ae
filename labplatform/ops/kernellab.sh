#!/usr/bin/env bash
# KernelLab's operations script, called by the Makefile:
#   install   system packages, Python and npm dependencies, static files, database
#   services  start Redis, virtlogd and libvirtd unless they already run
#   demo      the demo course and accounts
#   run       install + services + demo, then web, worker and beat in the foreground
#   test      services, then ruff, mypy and the whole pytest suite
# Every step is idempotent: a second run only does what is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

VENV=${KERNELLAB_VENV:-$ROOT/.venv}
DATA_DIR=${KERNELLAB_DATA_DIR:-$ROOT/var}
PY="$VENV/bin/python"
UV_VERSION=0.13.9

# Debian packages the platform needs on the host. Names are Debian 12's.
APT_PACKAGES=(
  python3 python3-venv python3-dev gcc pkg-config
  nodejs npm
  redis-server
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev
  qemu-system-x86 qemu-utils
  debootstrap e2fsprogs
  chromium fonts-dejavu-core
)

say() { printf '\033[1;36m==> %s\033[0m\n' "$*"; }
die() { printf '\033[1;31merror: %s\033[0m\n' "$*" >&2; exit 1; }


install_system_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    # nodejs/npm from another source (nodesource, nvm) are fine too.
    if [ "$pkg" = nodejs ] || [ "$pkg" = npm ]; then
      command -v "${pkg/nodejs/node}" >/dev/null && continue
    fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "system packages: all present"
    return
  fi
  say "system packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Django 5.2 LTS runs on Debian 12's own python3 (3.11): no second interpreter to
# install or to keep patched. PYTHON=/path/to/python3.x overrides.
find_python() {
  local candidate
  for candidate in "${PYTHON:-}" /usr/bin/python3 python3.13 python3.12 python3.11; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null || continue
    if "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  die "no Python 3.11 or newer with venv found; install python3 and python3-venv"
}

stamp_matches() {  # stamp_matches NAME FILE...: true when FILEs are unchanged since the stamp
  local stamp="$DATA_DIR/.stamp-$1"; shift
  [ -f "$stamp" ] && [ "$(cat "$@" | sha256sum)" = "$(cat "$stamp")" ]
}
stamp_write() {
  local stamp="$DATA_DIR/.stamp-$1"; shift
  cat "$@" | sha256sum >"$stamp"
}

install_python_deps() {
  local python
  python=$(find_python)
  if [ ! -x "$PY" ] || ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "virtualenv: creating $VENV with $python ($("$python" --version))"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  if stamp_matches python requirements-dev.lock && "$PY" -c 'import django, libvirt' 2>/dev/null; then
    say "python dependencies: up to date"
    return
  fi
  say "python dependencies: installing from requirements-dev.lock"
  "$VENV/bin/pip" install -q --disable-pip-version-check "uv==$UV_VERSION"
  "$VENV/bin/uv" pip sync -q --python "$PY" requirements-dev.lock
  stamp_write python requirements-dev.lock
}

install_npm_deps() {
  if stamp_matches npm frontend/package-lock.json && [ -d frontend/node_modules/@xterm/xterm ]; then
    say "npm dependencies: up to date"
    return
  fi
  say "npm dependencies: npm ci"
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
  stamp_write npm frontend/package-lock.json
}

cmd_install() {
  mkdir -p "$DATA_DIR"
  install_system_packages
  install_python_deps
  install_npm_deps
  say "static files and database"
  "$PY" manage.py collectstatic --noinput -v0
  "$PY" manage.py migrate --noinput -v0
}

redis_up() { redis-cli -u "${REDIS_URL:-redis://127.0.0.1:6379/0}" ping 2>/dev/null | grep -q PONG; }
libvirt_up() { timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; }

cmd_services() {
  mkdir -p "$DATA_DIR/redis"
  if redis_up; then
    say "redis: running"
  else
    say "redis: starting (data in $DATA_DIR/redis)"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --dir "$DATA_DIR/redis" \
      --appendonly yes --logfile "$DATA_DIR/redis/redis.log"
    for _ in $(seq 50); do redis_up && break; sleep 0.1; done
    redis_up || die "redis did not start; see $DATA_DIR/redis/redis.log"
  fi
  if pgrep -x virtlogd >/dev/null; then
    say "virtlogd: running"
  else
    say "virtlogd: starting"
    virtlogd -d
  fi
  if libvirt_up; then
    say "libvirtd: running"
  else
    say "libvirtd: starting"
    pgrep -x libvirtd >/dev/null || libvirtd -d
    for _ in $(seq 100); do libvirt_up && break; sleep 0.2; done
    libvirt_up || die "libvirtd did not answer on qemu:///system"
  fi
}

cmd_demo() {
  "$PY" manage.py seed_demo
}

cmd_run() {
  cmd_install
  cmd_services
  cmd_demo
  local bind=${KERNELLAB_BIND:-127.0.0.1:8000}
  say "KernelLab on http://$bind/ — log in as alice (student) or teacher (instructor). Ctrl-C stops everything."
  export PATH="$VENV/bin:$PATH"
  export KERNELLAB_HOST=${bind%:*} KERNELLAB_PORT=${bind##*:}
  exec "$VENV/bin/honcho" -f labplatform/ops/Procfile -d "$ROOT" start
}

cmd_test() {
  cmd_services
  [ -x "$PY" ] || die "no virtualenv at $VENV: run 'make install' (or 'make run') first"
  export PATH="$VENV/bin:$PATH"
  # Tests use their own Redis database so that they never touch a running site's queues.
  export REDIS_URL=${KERNELLAB_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
  say "ruff"
  ruff check .
  ruff format --check .
  say "mypy"
  mypy .
  say "pytest"
  pytest "$@"
}

main() {
  # apt, libvirt's system instance and the image builder (debootstrap, chroot) need root.
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "run as root, or install sudo"
    exec sudo --preserve-env=PATH,DATABASE_URL,REDIS_URL,KERNELLAB_ENV,KERNELLAB_DATA_DIR,KERNELLAB_VENV,KERNELLAB_BIND,CI "$0" "$@"
  fi
  local cmd=${1:-}
  shift || true
  case "$cmd" in
    install) cmd_install ;;
    services) cmd_services ;;
    demo) cmd_demo ;;
    run) cmd_run ;;
    test) cmd_test "$@" ;;
    *) die "usage: $0 install|services|demo|run|test [pytest args]" ;;
  esac
}

main "$@"
