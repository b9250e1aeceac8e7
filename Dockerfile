# queuectl: one image for every role (worker, orchestrator, migrate, dashboard, CLI).
# Stage 1 installs the package and its pinned dependencies into a virtualenv; stage 2 copies
# only that virtualenv into a slim, non-root runtime (no wheel files left in any layer).
# BASE: any image with Python 3.11 at /usr/local/bin/python (the test suite builds one from
# Debian's packages, since it has no image registry).
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
WORKDIR /src
# the pinned dependencies first: this layer stays cached while only queuectl changes
COPY deploy/constraints.txt ./
RUN python -m venv /opt/queuectl \
 && /opt/queuectl/bin/pip install --no-cache-dir --disable-pip-version-check -r constraints.txt
COPY pyproject.toml README.md ./
COPY queuectl ./queuectl
RUN /opt/queuectl/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps . \
 && /opt/queuectl/bin/python -m compileall -q /opt/queuectl/lib

FROM ${BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="queuectl" \
      org.opencontainers.image.description="Run shell commands as background jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/queuectl"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    QUEUECTL_LOG_FORMAT=json \
    PATH=/opt/queuectl/bin:$PATH
COPY --from=build /opt/queuectl /opt/queuectl
RUN useradd --create-home --uid 10001 queuectl
USER queuectl
WORKDIR /home/queuectl
# Healthy = this process serves: a worker's or orchestrator's metrics endpoint, the
# dashboard's /healthz (compose sets QUEUECTL_HEALTH_URL per service); no database query
# from every container every 30 s. One-shot commands (migrate) disable it.
ENV QUEUECTL_HEALTH_URL=http://127.0.0.1:9100/metrics
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['QUEUECTL_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["queuectl"]
CMD ["--help"]
