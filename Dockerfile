# tthc-monitor image. Build: `docker build -t tthc-monitor .`; run: see README.md, "Docker".
#
# The base is pinned by tag and by the digest of its multi-architecture index, so a rebuild gets the same
# Python and Debian. To move to a newer patch release: `docker buildx imagetools inspect
# python:3.11.X-slim-bookworm`, then update tag and digest together and rebuild.
FROM python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# tzdata: the zoneinfo database for Asia/Ho_Chi_Minh and any zone a maintenance window names.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin tthc \
 && mkdir -p /data /etc/tthc-monitor \
 && chown tthc:tthc /data

# Dependencies in their own layer, from exact versions: it is rebuilt only when constraints.txt changes,
# not on every source change.
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-deps --requirement /tmp/constraints.txt && rm /tmp/constraints.txt

WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY probes ./probes
COPY alerts ./alerts
# --no-deps: everything it needs is already installed above; `pip check` fails the build if not.
RUN pip install --no-deps . && pip check && rm -rf /src

# Listens on 0.0.0.0 and requires an API token (api.token_file); mount your own config over it.
COPY config/container.yaml /etc/tthc-monitor/config.yaml
COPY config/example.yaml /etc/tthc-monitor/config.example.yaml

USER tthc
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464

# SIGTERM starts the graceful stop: in-flight probes get scheduler.shutdown_grace (10s), then the store
# is flushed. Docker's default stop timeout is also 10s: run with `--stop-timeout 30` (compose:
# `stop_grace_period: 30s`) so the daemon is never killed mid-flush.
STOPSIGNAL SIGTERM

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["tthc-monitor"]
CMD ["run", "--config", "/etc/tthc-monitor/config.yaml"]
