# A stand-in for python:3.11-slim, built from Debian's packages (no image registry here):
# Python 3.11 with `python` and `pip` in /usr/local/bin, as in the official image.
ARG DEBIAN=queuectl-test/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /usr/local \
 && ln -sf /usr/local/bin/python3 /usr/local/bin/python
# after apt-get (which rewrites it): the CA of the proxy downloads go through
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
