#!/usr/bin/env bash
# Build the bnn-lab image for real and use it: docker/Dockerfile built with docker (where a
# daemon answers) or podman, then, inside the image and with no network, one digits epoch
# trained by `bnn-lab` and its packed model evaluated by `bnn-lab-eval`. Prints the image size,
# both accuracies and the time of each step.
#
#   bash docker/check.sh              # or: make image-check
#   bash docker/check.sh --can-build  # exit 0 if this machine can build, else 3 and why
#
# Where no image registry answers, the base image is made from Debian's own packages
# (debootstrap bookworm, which ships Python 3.11; root needed) and passed as BASE.
# Environment: ENGINE=docker|podman, BASE=<image> (skip the base step), TAG (bnn-lab),
# ISOLATION (podman's build isolation; chroot by default, which also works on hosts that
# refuse containers), STORAGE_DRIVER (podman's own variable: overlay, vfs), PIP_CERT or
# SSL_CERT_FILE (a CA bundle that pip needs behind a TLS-inspecting proxy; podman mounts it
# into the build's pip steps).
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${TAG:-localhost/bnn-lab:latest}
REGISTRY_BASE=docker.io/library/python:3.11-slim
OFFLINE_BASE=localhost/bnn-lab-base:bookworm

BASE_ROOT="" LOG=""
cleanup() { rm -rf "${BASE_ROOT:-/nonexistent}" "${LOG:-/nonexistent}"; }
trap cleanup EXIT

say() { echo "check: $*"; }
fail() { echo "check: $*" >&2; exit "${2:-1}"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }

pick_engine() {
  if [ -n "${ENGINE:-}" ]; then return; fi
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
  elif command -v podman >/dev/null && podman info >/dev/null 2>&1; then ENGINE=podman
  else return 1; fi
}

has_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

can_make_offline_base() { [ "$(id -u)" -eq 0 ] && command -v debootstrap >/dev/null; }

probe() {
  pick_engine || fail "no container engine can build here (no docker daemon answers; podman is not installed or 'podman info' fails)" 3
  if [ -n "${BASE:-}" ] || has_image "$REGISTRY_BASE" || has_image "$OFFLINE_BASE" || can_make_offline_base; then
    say "$ENGINE can build here"
    return
  fi
  if timeout 120 "$ENGINE" pull -q "$REGISTRY_BASE" >/dev/null 2>&1; then say "$ENGINE can build here"; return; fi
  fail "$ENGINE cannot get a base image: no registry answers and debootstrap (as root) is missing" 3
}

make_offline_base() {
  BASE_ROOT=$(mktemp -d /var/tmp/bnn-lab-base.XXXXXX)
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$BASE_ROOT" ${MIRROR:-} >/dev/null
  tar -C "$BASE_ROOT" -c . | "$ENGINE" import - "$OFFLINE_BASE" >/dev/null
  rm -rf "$BASE_ROOT"
}

choose_base() {
  if [ -n "${BASE:-}" ]; then BASE_HOW="given"; return; fi
  local start
  start=$(now)
  if has_image "$REGISTRY_BASE" || timeout 120 "$ENGINE" pull -q "$REGISTRY_BASE" >/dev/null 2>&1; then
    BASE=$REGISTRY_BASE BASE_HOW="from the registry, $(since "$start") s"
  elif has_image "$OFFLINE_BASE"; then
    BASE=$OFFLINE_BASE BASE_HOW="made from Debian packages earlier, reused"
  else
    can_make_offline_base || fail "no registry answers and debootstrap (as root) is missing: set BASE=<image>"
    make_offline_base
    BASE=$OFFLINE_BASE BASE_HOW="made from Debian packages (debootstrap bookworm), $(since "$start") s"
  fi
}

build() {  # build ARGS...: the engine's build with podman's isolation where it applies
  if [ "$ENGINE" = podman ]; then
    podman build --isolation="${ISOLATION:-chroot}" "$@"
  else
    docker build "$@"
  fi
}

if [ "${1:-}" = "--can-build" ]; then probe; exit 0; fi
pick_engine || fail "no container engine can build here (no docker daemon answers; podman is not installed or 'podman info' fails)" 3
say "engine: $("$ENGINE" --version)"
choose_base
say "base: $BASE ($BASE_HOW)"

start=$(now)
CA=${PIP_CERT:-${SSL_CERT_FILE:-}}
CA_ARGS=()
if [ -n "$CA" ] && [ -f "$CA" ] && [ "$ENGINE" = podman ]; then
  CA_ARGS=(-v "$CA:/run/bnn-lab-build-ca.crt:ro" --build-arg PIP_CERT=/run/bnn-lab-build-ca.crt)
  say "pip's CA bundle during the build: $CA"
fi
build "${CA_ARGS[@]}" --build-arg BASE="$BASE" -f docker/Dockerfile -t "$TAG" .
BUILD_SECONDS=$(since "$start")
entry=$("$ENGINE" image inspect --format '{{json .Config.Entrypoint}}' "$TAG")
[ "$entry" = '["bnn-lab"]' ] || fail "the image's entry point is $entry, not [\"bnn-lab\"]"
size=$("$ENGINE" image inspect --format '{{.Size}}' "$TAG")

start=$(now)
LOG=$(mktemp)
# no network for the run where the engine can take it away (podman's chroot isolation keeps the
# host's); check_inside.py also points every proxy variable at a closed port
NETWORK_ARGS=(--network=none)
NETWORK="none"
if [ "$ENGINE" = podman ] && [ "${ISOLATION:-chroot}" = chroot ]; then
  NETWORK_ARGS=()
  NETWORK="the host network (chroot isolation), proxy variables closed"
fi
say "network during the run: $NETWORK"
build --no-cache "${NETWORK_ARGS[@]}" --build-arg IMAGE="$TAG" -f docker/check.Dockerfile -t "$TAG-checked" docker \
  2>&1 | tee "$LOG"
CHECK_SECONDS=$(since "$start")
"$ENGINE" rmi "$TAG-checked" >/dev/null 2>&1 || true
value() { sed -n "s/^check: $1 //p" "$LOG" | tail -1; }

echo
say "image $TAG: built in $BUILD_SECONDS s, $(awk -v s="$size" 'BEGIN { printf "%.2f GB", s / 1e9 }') ($size bytes), entry point $entry"
say "inside: Python $(value python), torch $(value torch), $(value threads) CPUs"
say "bnn-lab data=digits trainer.max_epochs=1 logger=csv: $(value train_seconds) s, test/acc $(value test_acc), packed/test_acc $(value run_packed_test_acc)"
say "bnn-lab-eval on its packed model: $(value eval_seconds) s, packed/test_acc $(value packed_test_acc)"
say "check stage (start, run, evaluate): $CHECK_SECONDS s"
