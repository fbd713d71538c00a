# EcoGrid twin: the `ecogrid` command in a container.
#
#   docker build -t ecogrid .
#   docker run --rm ecogrid demo              # the README's demo
#   docker run --rm -p 8000:8000 ecogrid      # the live service (`ecogrid serve`)
#
# Three stages: `web` fetches the dashboard's front-end libraries from
# web/package-lock.json (what ./bootstrap's dashboard_assets does); `build`
# installs the project with pip (the same `pip install` of pyproject.toml that
# ./bootstrap runs, without the editable flag and the test extra) into a
# virtualenv; `runtime` copies only that virtualenv onto a slim base, runs as a
# non-root user and compiles the numba kernels once at build time so that the
# first request does not pay for it.

ARG PYTHON_VERSION=3.11

FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
# The files the dashboard loads (api/http/dashboard VENDOR_FILES), with their licences:
# the same list as ./bootstrap's dashboard_assets (a test keeps the two equal).
RUN mkdir -p /vendor/leaflet/images /vendor/uplot \
    && cp node_modules/leaflet/dist/leaflet-src.esm.js node_modules/leaflet/dist/leaflet.css \
       node_modules/leaflet/LICENSE /vendor/leaflet/ \
    && cp node_modules/leaflet/dist/images/*.png /vendor/leaflet/images/ \
    && cp node_modules/uplot/dist/uPlot.esm.js node_modules/uplot/dist/uPlot.min.css \
       node_modules/uplot/LICENSE /vendor/uplot/

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/ecogrid
ENV PATH=/opt/ecogrid/bin:$PATH
WORKDIR /src
# Dependencies first (cached while only the code changes), then the project.
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["postgres"]))' > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY twin ./twin
COPY optimizer ./optimizer
COPY scenarios ./scenarios
COPY adapters ./adapters
COPY api ./api
COPY --from=web /vendor ./api/http/dashboard/vendor
# The project itself (its dependencies are installed by the layer above). The vendor
# folder is copied in whole: pyproject's package-data does not list every file type
# it holds (images, licences).
# hadolint ignore=DL3013
RUN pip install --no-deps ".[postgres]" \
    && dash="$(python -c 'import api.http.dashboard as d, os; print(os.path.dirname(d.__file__))')" \
    && mkdir -p "$dash/vendor" && cp -r api/http/dashboard/vendor/. "$dash/vendor/" \
    && ecogrid --help >/dev/null

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG UID=10001
LABEL org.opencontainers.image.title="ecogrid" \
      org.opencontainers.image.description="EcoGrid twin: digital twin, dispatch optimizer and live operation of a renewable fleet" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid ${UID} ecogrid \
    && useradd --system --uid ${UID} --gid ecogrid --home-dir /home/ecogrid --create-home \
       --shell /usr/sbin/nologin ecogrid \
    && mkdir -p /var/lib/ecogrid /var/cache/ecogrid/numba \
    && chown -R ecogrid:ecogrid /var/lib/ecogrid /var/cache/ecogrid
COPY --from=build /opt/ecogrid /opt/ecogrid
ENV PATH=/opt/ecogrid/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/var/cache/ecogrid/numba \
    NUMBA_CPU_NAME=generic \
    ECOGRID_DATA_DIR=/var/lib/ecogrid \
    ECOGRID_LOG_LEVEL=INFO
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER ${UID}:${UID}
WORKDIR /var/lib/ecogrid
# Warm the numba cache: one short demo day compiles and caches every twin kernel
# (NUMBA_CPU_NAME=generic keeps the cache valid on any x86-64 host).
RUN ecogrid demo --twin-only --sites 4 --step-min 60 --json >/dev/null \
    && test -n "$(ls -A /var/cache/ecogrid/numba)"
VOLUME ["/var/lib/ecogrid"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["ecogrid"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
