#!/usr/bin/env bash
# Base images for the container tests, with no registry: a minimal Debian root file system made
# by debootstrap from Debian's packages and imported into the local Docker engine. The image is
# named after a hash of its suite, mirror and package list, so a second run with the same list
# only finds it (seconds); a changed list makes a new one.
#
#   scripts/base-image.sh [minimal|python|docker-cli]   prints the image name, e.g. mlwf-test-base:minimal-3f2a…
#
# minimal: git, ssh client, CA certificates, tini (what the agent image needs at run time);
# python: the same plus python3 with venv and pip (for jobs that run the official wandb SDK);
# docker-cli: only this machine's docker client at /usr/local/bin/docker, for the agent image's
# DOCKER_CLI stage (the production build copies it from the public docker:cli image).
# Exit 3 says what is missing (no Docker engine, no debootstrap); progress goes to stderr.
set -euo pipefail

kind=${1:-minimal}
suite=${MLWF_BASE_SUITE:-bookworm}
mirror=${MLWF_BASE_MIRROR:-http://deb.debian.org/debian}
common=ca-certificates,git,openssh-client,tini
case "$kind" in
    minimal) packages=$common ;;
    python) packages=$common,python3,python3-venv,python3-pip ;;
    docker-cli) ;;
    *)
        echo "base-image.sh: unknown kind '$kind' (minimal or python)" >&2
        exit 2
        ;;
esac

missing() {
    echo "base-image.sh: $1" >&2
    exit 3
}
command -v docker >/dev/null || missing "docker is not installed"
docker info >/dev/null 2>&1 || missing "no Docker engine answers (is dockerd running, and may this user use it?)"

if [ "$kind" = docker-cli ]; then
    client=$(readlink -f "$(command -v docker)")
    image="mlwf-test-base:docker-cli-$(sha256sum "$client" | cut -c1-12)"
    if ! docker image inspect "$image" >/dev/null 2>&1; then
        root=$(mktemp -d)
        trap 'rm -rf "$root"' EXIT
        install -D -m 0755 "$client" "$root/usr/local/bin/docker"
        "${as_root[@]}" tar -C "$root" -c . | docker import - "$image" >&2
    fi
    echo "$image"
    exit 0
fi

tag=$(printf '%s\n' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-12)
image="mlwf-test-base:$kind-$tag"
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image"
    exit 0
fi

export PATH="$PATH:/usr/sbin:/sbin"
command -v debootstrap >/dev/null || missing "debootstrap is missing (apt-get install debootstrap)"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || missing "debootstrap needs root: run as root or with passwordless sudo"
    as_root=(sudo -n)
fi
root=$(mktemp -d)
trap '"${as_root[@]}" rm -rf "$root"' EXIT
echo "==> debootstrap $suite ($packages) into $root" >&2
"${as_root[@]}" debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2
# Package caches would only make the image bigger.
# shellcheck disable=SC2086
"${as_root[@]}" sh -c "rm -rf $root/var/cache/apt/archives/*.deb $root/var/lib/apt/lists/*"
echo "==> docker import $image" >&2
"${as_root[@]}" tar -C "$root" -c . |
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        - "$image" >&2
echo "$image"
