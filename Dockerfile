# One image with the workspace's binaries: order-service, inventory-service, invoice-service,
# outbox-processor, flow-console and outbox-verify, in /usr/local/bin. docker-compose.yml runs
# each service from this image and picks its binary with `command:`. One image rather than one
# each (or a build ARG per binary) because they share almost all their dependencies: one
# `cargo build` compiles the workspace once, and compose builds and stores one image.
#
#   docker build -t outbox-reference:local .
#   docker run --rm -e DATABASE_URL=... outbox-reference:local order-service

# --- build -------------------------------------------------------------------------------
FROM rust:1-bookworm AS build

# The rust image has what the crates need: gcc and make for librdkafka (rdkafka-sys runs
# librdkafka's own ./configure, no cmake, no OpenSSL or SASL: those features are off) and
# zlib1g-dev, which libz-sys links dynamically (hence zlib1g in the runtime image).
WORKDIR /src
COPY . .

# The cache mounts keep the registry and target/ between builds (BuildKit, the default
# builder of current Docker); the binaries are copied out in the same step because a cache
# mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bins \
        -p order-service -p inventory-service -p invoice-service -p outbox-processor \
        -p flow-console -p outbox-verify \
    && mkdir -p /out \
    && cp target/release/order-service \
          target/release/inventory-service \
          target/release/invoice-service \
          target/release/outbox-processor \
          target/release/flow-console \
          target/release/outbox-verify \
          /out/

# --- runtime -----------------------------------------------------------------------------
FROM debian:bookworm-slim

# zlib1g: libz.so.1, the only shared library the binaries need beyond libc and libgcc
# (librdkafka is linked statically). curl: the compose health checks call GET /health with
# it. ca-certificates: the usual trust store, for whatever TLS endpoint you point them at.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app

COPY --from=build /out/ /usr/local/bin/

USER 10001:10001
# Outside a container the services bind 127.0.0.1 by default; inside one they must listen on
# the container's interface to be reached through a published port.
ENV BIND_ADDRESS=0.0.0.0
# The ports the services listen on by default (PORT overrides): order 9000, inventory 8000,
# invoice 8001, relay 8080, flow console 8090.
EXPOSE 9000 8000 8001 8080 8090
# No default command on purpose: name the binary to run (compose does, per service).
