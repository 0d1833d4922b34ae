#!/usr/bin/env bash
# Builds the platform's Docker images, with no registry, in one command:
#   minifaas/container-service  minifaas/node-service  minifaas/resource-manager
#   minifaas/scheduler          minifaas/apiserver
# Each image is FROM scratch with one statically linked release binary (plus the tiny
# /faas-probe health probe for the images docker-compose health-checks).
#
# Fast when nothing changed: cargo's incremental release build, then Docker's layer cache
# (a binary whose bytes did not change gives the same layer).
#
# Environment:
#   FAAS_STATIC_TARGET_DIR  cargo target dir of the static build (default: <repo>/target-static)
#   FAAS_IMAGE_TAG          image tag (default: latest)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${FAAS_STATIC_TARGET_DIR:-$repo/target-static}"
tag="${FAAS_IMAGE_TAG:-latest}"
triple=x86_64-unknown-linux-gnu

# crt-static: no dynamic loader in a scratch image. linux_getrandom: no /dev/urandom needed.
export RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"'
export CARGO_PROFILE_RELEASE_DEBUG=0
export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_TARGET_DIR="$target_dir"

echo "build-images: static release build (target dir $target_dir)" >&2
cargo build --manifest-path "$repo/Cargo.toml" --release --target "$triple" --bins --quiet \
    -p faas-container-service -p faas-node-service -p faas-resource-manager \
    -p faas-scheduler -p faas-apiserver

bin="$target_dir/$triple/release"
stage="$target_dir/images"

# image-name  binary  with-probe
images=(
    "container-service container-service no"
    "node-service node-service no"
    "resource-manager resource-manager yes"
    "scheduler scheduler yes"
    "apiserver apiserver yes"
)

for line in "${images[@]}"; do
    read -r name binary probe <<<"$line"
    ctx="$stage/$name"
    mkdir -p "$ctx"
    # Copy only when the bytes changed, so Docker's cache sees the same file.
    cmp -s "$bin/$binary" "$ctx/app" || cp "$bin/$binary" "$ctx/app"
    if [ "$probe" = yes ]; then
        cmp -s "$bin/faas-probe" "$ctx/faas-probe" || cp "$bin/faas-probe" "$ctx/faas-probe"
    else
        rm -f "$ctx/faas-probe"
    fi
    if [ "$name" = apiserver ]; then
        # The mount point of its data volume (FAAS_DATA_DIR=/data in docker-compose.yml).
        mkdir -p "$ctx/data"
    fi
    echo "build-images: minifaas/$name:$tag" >&2
    if ! out="$(docker build --quiet -f "$repo/deploy/Dockerfile" \
        --build-arg "COMPONENT=$name" \
        --label "minifaas.image=$name" \
        -t "minifaas/$name:$tag" "$ctx" 2>&1)"; then
        echo "$out" >&2
        exit 1
    fi
done

# NATS for the queue on JetStream (docker-compose.nats.yml), when the machine has Debian's
# nats-server: the binary and the C library files it links, FROM scratch.
if nats="$(command -v nats-server)"; then
    ctx="$stage/nats"
    mkdir -p "$ctx/data"
    cmp -s "$nats" "$ctx/nats-server" || cp "$nats" "$ctx/nats-server"
    for lib in $(ldd "$nats" | grep -o '/[^ ]*'); do
        mkdir -p "$ctx$(dirname "$lib")"
        cmp -s "$lib" "$ctx$lib" || cp -L "$lib" "$ctx$lib"
    done
    echo "build-images: minifaas/nats:$tag" >&2
    if ! out="$(docker build --quiet -f "$repo/deploy/nats.Dockerfile" \
        --label "minifaas.image=nats" -t "minifaas/nats:$tag" "$ctx" 2>&1)"; then
        echo "$out" >&2
        exit 1
    fi
else
    echo "build-images: no nats-server here (apt-get install nats-server): minifaas/nats not built" >&2
fi

docker images --filter "label=minifaas.image" --filter dangling=false --format '{{.Repository}}:{{.Tag}}  {{.Size}}' >&2
