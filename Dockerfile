# kalshi-rl live node / trainer image.  The same commands run natively (see README):
#   docker build -t kalshi-rl . && docker run --rm -p 127.0.0.1:8765:8765 kalshi-rl up
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
RUN pip install torch==2.13.0 && pip install -e .
VOLUME /data
ENTRYPOINT ["kalshi-rl"]
CMD ["up"]
