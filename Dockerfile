# syntax=docker/dockerfile:1
# rollgate: multi-stage build. The builder compiles the `rollgate` binary; the runtime image
# is Debian slim with only that binary, the example policies and a non-root user.
#   docker build -t rollgate .
#   docker run -p 8080:8080 -v rollgate-data:/data -e ROLLGATE_ADMIN_TOKEN=... rollgate

FROM rust:1-slim-bookworm AS builder
WORKDIR /src
COPY . .
# --locked: build exactly what Cargo.lock says. Debug info is stripped for the runtime image.
RUN cargo build --release --locked --bin rollgate \
    && strip --strip-debug target/release/rollgate \
    && cp target/release/rollgate /usr/local/bin/rollgate

FROM debian:bookworm-slim
# The system roots that outgoing TLS (https webhooks, PostgreSQL verify-full) trusts.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --user-group --uid 10001 --home-dir /data --no-create-home rollgate \
    && mkdir -p /data /app \
    && chown rollgate:rollgate /data
COPY --from=builder /usr/local/bin/rollgate /usr/local/bin/rollgate
COPY --chown=rollgate:rollgate policies /app/policies
# Two malloc arenas: fewer arenas, less fragmentation across threads (docs/operations.md#memory).
ENV MALLOC_ARENA_MAX=2 \
    ROLLGATE_BIND=0.0.0.0:8080 \
    ROLLGATE_DATA_DIR=/data \
    ROLLGATE_POLICIES_DIR=/app/policies \
    ROLLGATE_URL=http://127.0.0.1:8080
# Declared after the chown so a fresh named volume starts owned by `rollgate`.
VOLUME ["/data"]
WORKDIR /app
USER rollgate
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["rollgate", "health"]
ENTRYPOINT ["rollgate"]
CMD ["serve"]
