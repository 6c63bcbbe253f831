FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin tthc \
 && mkdir -p /data /etc/tthc-monitor && chown tthc /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY probes ./probes
COPY alerts ./alerts
RUN pip install . && rm -rf /src

COPY config/example.yaml /etc/tthc-monitor/config.example.yaml
USER tthc
WORKDIR /data
VOLUME ["/data"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status == 200 else 1)"
ENTRYPOINT ["tthc-monitor"]
CMD ["run", "--config", "/etc/tthc-monitor/config.yaml"]
