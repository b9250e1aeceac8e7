# A stand-in for prom/prometheus, from Debian's package: same entrypoint, so the compose
# file's command (--config.file, --storage.tsdb.path) works unchanged.
ARG DEBIAN=queuectl-test/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
