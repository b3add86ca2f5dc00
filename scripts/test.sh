#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (a Python venv with
# the official wandb SDK, pinned; debootstrap for the container tests' base image), then format
# check, clippy with warnings as errors, and cargo test. The container tests need a running
# Docker engine: without one they say SKIPPED, and under CI=true they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
requirements=scripts/requirements-test.txt
stamp="$venv/.mlwf-requirements"
if ! cmp -s "$requirements" "$stamp" 2>/dev/null; then
    echo "==> creating $venv from $requirements"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$stamp"
fi
# The container tests make their base image with debootstrap (scripts/base-image.sh), from
# Debian's packages like everything else here; it needs root, as does apt.
export PATH="$PATH:/usr/sbin:/sbin"
if ! command -v debootstrap >/dev/null && command -v apt-get >/dev/null; then
    echo "==> installing debootstrap"
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo -n)
    "${as_root[@]}" apt-get install -y -q debootstrap >/dev/null 2>&1 ||
        { "${as_root[@]}" apt-get update -q >/dev/null && "${as_root[@]}" apt-get install -y -q debootstrap >/dev/null; } ||
        echo "==> could not install debootstrap: the container tests will say what is missing"
fi
# Tests that drive the official SDK fail, rather than skip, when it is missing.
export MLWF_PYTHON="$PWD/$venv/bin/python"
export MLWF_REQUIRE_PYTHON=1

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings
# The product as released: without the test scaffolding (the `testkit` feature).
cargo clippy --no-default-features --locked -- -D warnings
echo "==> cargo test"
cargo test --all-targets --locked
