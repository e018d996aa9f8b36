# syntax=docker/dockerfile:1
# The adapter image: hf-adapter (serve, worker, schedule, db, audit, keys …), hf-mock and
# hf-conformance. Runs as an unprivileged user and writes nothing outside /tmp, so it runs with
# a read-only root filesystem and a tmpfs on /tmp (docs/operations.md#deploy).

FROM python:3.11.14-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY adapter/__init__.py adapter/__init__.py
# pyproject.toml pins the dependencies' ranges; the build backend comes from its build-system.
RUN pip install --no-cache-dir ./[otlp] \
 && pip uninstall --yes healthforce-integration
COPY adapter adapter
COPY cli_startup cli_startup
COPY mocks mocks
COPY conformance conformance
COPY harness harness
COPY indonesian_ids indonesian_ids
COPY openapi_schemas openapi_schemas
COPY retry_after retry_after
COPY strict_json strict_json
COPY contracts contracts
# Editable: the code reads contracts/openapi beside the packages (/app/contracts), which a
# regular install into site-packages would leave behind. Compiled now: the root is read-only later.
RUN pip install --no-cache-dir --no-deps --editable . \
 && python -m compileall -q /app /opt/venv

FROM python:3.11.14-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
RUN groupadd --system --gid 10001 hf \
 && useradd --system --uid 10001 --gid hf --no-create-home --home-dir /tmp hf
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000 9000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["hf-adapter", "serve", "--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "8"]
