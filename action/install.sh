#!/usr/bin/env bash
# Puts the mlwf binary for this runner in place and writes its path to $GITHUB_OUTPUT as `bin`.
#
# A runner that has mlwf already (a self-hosted runner, or `act` on a developer's machine) names
# it in MLWF_BIN, and nothing is fetched or built. A release tag (vX.Y.Z) downloads that release's
# binary and verifies its SHA-256 before use: a start in seconds. Anything else (a branch, a SHA,
# a local `uses: ./action`) builds from the checkout the action lives in. A bad checksum is
# fatal, never a reason to fall back.
set -euo pipefail

version="${MLWF_VERSION:-}"
repository="${MLWF_ACTION_REPOSITORY:-}"
action_path="${MLWF_ACTION_PATH:?}"
dest="${RUNNER_TEMP:-/tmp}/mlwf-bin"
mkdir -p "$dest"

target() {
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) echo x86_64-unknown-linux-gnu ;;
        Linux-aarch64 | Linux-arm64) echo aarch64-unknown-linux-gnu ;;
        Darwin-arm64) echo aarch64-apple-darwin ;;
        Darwin-x86_64) echo x86_64-apple-darwin ;;
        *) echo "mlwf: no release binary for $(uname -s) $(uname -m)" >&2; return 1 ;;
    esac
}

sha256() {
    if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | cut -d' ' -f1
}

download() {
    local triple archive base
    triple="$(target)" || return 1
    archive="mlwf-$version-$triple.tar.gz"
    base="${GITHUB_SERVER_URL:-https://github.com}/$repository/releases/download/$version"
    echo "mlwf: downloading $archive from $repository" >&2
    curl -fsSL --retry 3 --retry-delay 2 -o "$dest/$archive" "$base/$archive" || return 1
    curl -fsSL --retry 3 --retry-delay 2 -o "$dest/$archive.sha256" "$base/$archive.sha256" || return 1
    local expected actual
    expected="$(cut -d' ' -f1 <"$dest/$archive.sha256")"
    actual="$(sha256 "$dest/$archive")"
    if [ "$expected" != "$actual" ]; then
        echo "::error::mlwf: checksum mismatch for $archive (expected $expected, got $actual)" >&2
        return 3
    fi
    tar -xzf "$dest/$archive" -C "$dest" >&2
    echo "$dest/mlwf"
}

build() {
    local manifest="$action_path/../Cargo.toml"
    if [ ! -f "$manifest" ]; then
        echo "::error::mlwf: no release binary for version '$version' and no source checkout to build" >&2
        exit 1
    fi
    echo "mlwf: building from source ($manifest)" >&2
    cargo build --release --locked --quiet --no-default-features --manifest-path "$manifest" --bin mlwf >&2
    echo "$(cd "$action_path/.." && pwd)/target/release/mlwf"
}

bin=""
if [ -n "${MLWF_BIN:-}" ]; then
    if [ ! -x "$MLWF_BIN" ]; then
        echo "::error::mlwf: MLWF_BIN=$MLWF_BIN is not an executable file" >&2
        exit 1
    fi
    bin="$MLWF_BIN"
elif [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]] && [ -n "$repository" ]; then
    status=0
    bin="$(download)" || status=$?
    # A tampered or corrupt download stops here; only a missing release falls back.
    if [ "$status" -eq 3 ]; then exit 1; fi
    if [ "$status" -ne 0 ]; then bin=""; fi
fi
if [ -z "$bin" ]; then
    bin="$(build)"
fi
"$bin" --version
echo "bin=$bin" >>"${GITHUB_OUTPUT:-/dev/null}"
