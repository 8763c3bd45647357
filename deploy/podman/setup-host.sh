#!/usr/bin/env bash
# Makes a Debian bookworm machine with no Docker engine and no image registry able to build and
# run cnn-lens's containers: Debian's podman with runc, podman-compose from PyPI, and a local
# base image that stands in for python:3.11-slim-bookworm. CI runs it before the tests
# (tests/containers/); a developer on such a machine runs it once, as root. Idempotent: each step
# is skipped when its result is already there, so a second run takes a second.
#
# Then: PYTHON_IMAGE=localhost/cnn-lens-base:bookworm BUILDAH_FORMAT=docker podman-compose up -d
# (docs/deployment.md, "Without Docker: podman").
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-localhost/cnn-lens-base:bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
COMPOSE_VENV=${COMPOSE_VENV:-/opt/podman-compose}
PODMAN_COMPOSE_VERSION=1.6.0

if [ "$(id -u)" != 0 ]; then
  echo "setup-host.sh: run as root (it installs Debian packages and configures podman)" >&2
  exit 1
fi

missing=()
for tool in podman runc debootstrap; do command -v "$tool" > /dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
fi

# Debian's podman-compose (1.0.3) ignores `profiles` and `depends_on` conditions: PyPI's 1.6.0
# runs the compose file as Docker's compose does.
if [ ! -x "$COMPOSE_VENV/bin/podman-compose" ]; then
  python3 -m venv "$COMPOSE_VENV"
  "$COMPOSE_VENV/bin/pip" install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
ln -sf "$COMPOSE_VENV/bin/podman-compose" /usr/local/bin/podman-compose

# Two settings this kind of sandbox needs: podman's default ulimits are higher than the hard
# limits a container may raise to here (crun/runc: setrlimit RLIMIT_NOFILE: Operation not
# permitted), and crun refuses the host's hybrid cgroups while runc accepts them.
mkdir -p /etc/containers/containers.conf.d
cat > /etc/containers/containers.conf.d/cnn-lens.conf <<EOF
# Written by cnn-lens's deploy/podman/setup-host.sh
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF

# The base image: Debian bookworm's own Python 3.11 (what python:3.11-slim-bookworm is built on),
# from the apt mirror this machine uses, since no registry is reachable. The machine's local CA
# certificates go in too: HTTPS from inside a build (pip) is re-signed by that CA here.
if ! podman image exists "$BASE_IMAGE"; then
  rootfs=$(mktemp -d /var/tmp/cnn-lens-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$DEBIAN_MIRROR" > /dev/null
  if compgen -G "/usr/local/share/ca-certificates/*.crt" > /dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates > /dev/null
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -c . | podman import --change 'CMD ["python3"]' - "$BASE_IMAGE" > /dev/null
fi
runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}')
echo "podman $(podman --version | cut -d' ' -f3), runtime $runtime," \
     "podman-compose $PODMAN_COMPOSE_VERSION, base image $BASE_IMAGE"
