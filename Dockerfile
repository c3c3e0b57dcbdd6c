# kalshi-rl live node / trainer / dashboard image.  The same commands run natively (README):
#   docker build -t kalshi-rl .
#   docker run --rm -p 127.0.0.1:8000:8000 -e KALSHI_RL_WEB_TOKEN=$(openssl rand -hex 16) kalshi-rl
# The dashboard binds 0.0.0.0 inside the container, so its control routes need that token
# (open http://127.0.0.1:8000/?token=... once).
FROM node:20-bookworm-slim AS ui
WORKDIR /ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui ./
RUN npm run build

FROM python:3.11-slim-bookworm
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
    KALSHI_RL_DATA_DIR=/data NUMBA_CACHE_DIR=/tmp/numba-cache
RUN apt-get update && apt-get install -y --no-install-recommends make build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core core
COPY kalshi_rl kalshi_rl
COPY sql sql
COPY --from=ui /ui/dist ui/dist
RUN pip install torch==2.13.0 && pip install -e .
VOLUME /data
EXPOSE 8000
ENTRYPOINT ["kalshi-rl"]
CMD ["up", "--host", "0.0.0.0"]
