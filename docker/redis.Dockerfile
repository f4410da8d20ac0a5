# Redis for docker-compose.yml, from Debian's redis-server on the same base image as the app (no
# registry needed). Append-only persistence in /data (a volume): queued runs survive a restart.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# a fixed uid/gid (the package reuses the existing "redis" user), so USER can be numeric
RUN groupadd --system --gid 10002 redis \
 && useradd --system --uid 10002 --gid redis --home-dir /var/lib/redis --no-create-home redis \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
VOLUME ["/data"]
EXPOSE 6379
USER 10002:10002
HEALTHCHECK --interval=10s --timeout=5s --retries=5 CMD ["redis-cli", "ping"]
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", "--dir", "/data", "--appendonly", "yes", "--save", "60 1"]
