# The llm-monitor application image: one image, three roles chosen by the command
# (`run` = everything in one process, `scheduler`, `api`); see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and code first, the catalog config last: editing the config does not reinstall.
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY api ./api
COPY llm_monitor ./llm_monitor
RUN pip install . && rm -rf build *.egg-info

COPY config ./config

# Non-root at run time. /app/data holds the SQLite file of the embedded default (`run` without
# DATABASE_URL); with PostgreSQL it stays empty.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin monitor \
    && mkdir -p /app/data \
    && chown monitor /app/data
USER monitor

EXPOSE 8000 9000

# For the default command; docker-compose.yml sets one per role (the scheduler listens on 9000).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]

ENTRYPOINT ["llm-monitor"]
CMD ["run", "--host", "0.0.0.0", "--port", "8000"]
