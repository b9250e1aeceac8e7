# queuectl: one image for every role (worker, orchestrator, migrate, CLI).
# Stage 1 builds wheels; stage 2 installs them into a slim, non-root runtime.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY queuectl ./queuectl
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="queuectl" \
      org.opencontainers.image.description="Run shell commands as background jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://example.invalid/queuectl"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    QUEUECTL_LOG_FORMAT=json
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home --uid 10001 queuectl
USER queuectl
WORKDIR /home/queuectl
# healthy = the database answers this process's configuration
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["queuectl", "status", "--json"]
ENTRYPOINT ["queuectl"]
CMD ["--help"]
