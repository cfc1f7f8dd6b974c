# Ganzhi in one image: every `ganzhi` command (API, workers, maintenance), and mosquitto for `ganzhi up`
# (started by it when MQTT_URL is unset). docker-compose.yml runs one command per container.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/ganzhi
COPY pyproject.toml README.md ./
COPY core core
COPY devices devices
COPY registry registry
COPY ingest ingest
COPY analytics analytics
COPY alerts alerts
COPY api api
COPY simulators simulators
COPY ganzhi ganzhi
RUN pip install --no-cache-dir .
RUN useradd --system --create-home ganzhi && mkdir -p var && chown ganzhi var
# The broker's files, written by `ganzhi broker config` / `broker sync` running as the eclipse-mosquitto image's
# user (uid 1883): a new named volume mounted here takes this ownership.
RUN mkdir -p /mosquitto/config /mosquitto/auth && chown -R 1883:1883 /mosquitto
USER ganzhi
ENV GANZHI_HTTP_HOST=0.0.0.0 PYTHONUNBUFFERED=1
EXPOSE 8080 1884 9212
CMD ["ganzhi", "up"]
