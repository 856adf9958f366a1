# fakepop as a service container: POP3 on 1110, POP3S on 1995, the control API on 8110.
#
#   docker build -t fakepop .
#   docker run --rm -p 127.0.0.1:1110:1110 -p 127.0.0.1:1995:1995 -p 127.0.0.1:8110:8110 fakepop
#   curl -fsS http://localhost:8110/api/v1/ca -o ca.pem     # the CA to trust
#
# Settings are FAKEPOP_* variables (see `fakepop serve --help`); arguments after the image name
# are flags of `fakepop serve`. docs/container.md has GitHub Actions and docker compose examples.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A virtual environment of its own, so the image's Python packages stay as they were.
COPY pyproject.toml README.md /src/
COPY fakepop /src/fakepop
COPY fixtures /src/fixtures
RUN python -m venv /opt/fakepop \
    && /opt/fakepop/bin/pip install --no-compile '/src[generate]' \
    && rm -rf /src \
    && useradd --uid 10001 --user-group --home-dir /var/lib/fakepop --create-home \
        --shell /usr/sbin/nologin fakepop \
    && install -d -o fakepop -g fakepop -m 0755 /var/lib/fakepop/ca

ENV PATH=/opt/fakepop/bin:$PATH \
    FAKEPOP_HOST=0.0.0.0 \
    FAKEPOP_PORT=1110 \
    FAKEPOP_TLS_PORT=1995 \
    FAKEPOP_CONTROL_HOST=0.0.0.0 \
    FAKEPOP_CONTROL_PORT=8110 \
    FAKEPOP_CONTROL_INSECURE=1 \
    FAKEPOP_CERT_DIR=/var/lib/fakepop/ca
# The CA is made at the first start in FAKEPOP_CERT_DIR (ca.pem, ca.key) and kept there: mount a
# volume on it to share ca.pem with other containers, or to bring a CA from `fakepop ca --out`.

# The control API listens on all the container's addresses without a token: a service container
# is reached only through the ports you publish (publish them on 127.0.0.1) or from its own
# network. Set FAKEPOP_CONTROL_TOKEN to require "Authorization: Bearer <token>" all the same.

USER fakepop
WORKDIR /var/lib/fakepop
EXPOSE 1110 1995 8110

# /health needs no token, so the check works whether or not one is set. A short interval, since
# CI waits for "healthy" before it starts the steps that use the service.
HEALTHCHECK --interval=3s --timeout=2s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/api/v1/health' % os.environ.get('FAKEPOP_CONTROL_PORT', '8110'), timeout=2)"]

# fakepop is PID 1 and stops at once on SIGTERM: it closes the sessions and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["fakepop"]
CMD ["serve"]
