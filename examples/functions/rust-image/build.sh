#!/usr/bin/env bash
# Builds the Rust example function into a local Docker image (no registry is reachable, so
# the image is FROM scratch with one statically linked binary):
#
#   examples/functions/rust-image/build.sh [IMAGE]      # IMAGE default: faas-example/rust-hello:latest
#
# then deploy it on a platform whose nodes use the Docker runtime (deploy/image-functions.toml).
# Safe to run again: cargo rebuilds only what changed, and an unchanged binary gives Docker
# the same layer (the image keeps its id).
#
# Environment:
#   RUST_IMAGE_TARGET_DIR  cargo target dir (default: target/ beside this script)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${1:-faas-example/rust-hello:latest}"
target_dir="${RUST_IMAGE_TARGET_DIR:-$here/target}"
triple=x86_64-unknown-linux-gnu
binary=rust-hello

say() { echo "rust-image: $*" >&2; }

for tool in cargo docker; do
    if ! command -v "$tool" >/dev/null; then
        say "error: $tool is not on PATH"
        exit 1
    fi
done

# crt-static: a FROM scratch image has no C library to load. --target: RUSTFLAGS then apply
# to the target only (not to build scripts and proc macros, which must stay dynamic).
say "static release build of $binary (target dir $target_dir)"
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$target_dir" \
    cargo build --manifest-path "$here/Cargo.toml" --release --target "$triple" --locked --quiet

built="$target_dir/$triple/release/$binary"
# A dynamically linked ELF names its loader (the program interpreter).
if command -v readelf >/dev/null && readelf -l "$built" | grep -q 'program interpreter'; then
    say "error: $built is dynamically linked; it cannot start in a FROM scratch image"
    exit 1
fi

# The build context holds only the binary (not target/), copied only when its bytes
# changed, so Docker's layer cache sees the same file.
stage="$target_dir/image-context"
mkdir -p "$stage"
cmp -s "$built" "$stage/$binary" || cp "$built" "$stage/$binary"
chmod 0755 "$stage/$binary"

say "docker build -t $image"
if ! out="$(docker build --quiet -f "$here/Dockerfile" -t "$image" "$stage" 2>&1)"; then
    echo "$out" >&2
    say "error: docker build failed (is the Docker daemon running?)"
    exit 1
fi
say "built $image: $(docker image inspect --format '{{.Id}}, {{.Size}} bytes' "$image")"
