# Ganzhi in one image: the platform and mosquitto (started by `ganzhi up` when MQTT_URL is unset).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/ganzhi
COPY pyproject.toml README.md ./
COPY core core
COPY devices devices
COPY registry registry
COPY ingest ingest
COPY api api
COPY ganzhi ganzhi
RUN pip install --no-cache-dir .
RUN useradd --system --create-home ganzhi && mkdir -p var && chown ganzhi var
USER ganzhi
ENV GANZHI_HTTP_HOST=0.0.0.0
EXPOSE 8080 1884
CMD ["ganzhi", "up"]
