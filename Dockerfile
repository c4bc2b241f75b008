# The image of docker-compose.yml's workers and dashboard. The project runs from /app, so
# objectives you copy in are found as in a checkout; the shipped studies are in search/studies.
#   docker build -t schedsearch .
#   docker run --rm -e SEARCH_STORAGE schedsearch python -m search run --study smoke
# PyPI's torch wheel for Linux carries CUDA: the same image runs on CPU-only and GPU hosts.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# 1. Dependencies only (a cached layer while just the code changes): install the project
#    from empty packages, then remove it again, keeping what it pulled in.
COPY pyproject.toml README.md ./
RUN mkdir -p search objectives dashboards \
 && touch search/__init__.py objectives/__init__.py dashboards/__init__.py \
 && pip install . \
 && pip uninstall -y schedsearch \
 && rm -rf search objectives dashboards build *.egg-info

# 2. The project itself.
COPY search search
COPY objectives objectives
COPY dashboards dashboards

# 3. No root at run time; data sets and caches go to /data (a volume in docker-compose.yml).
RUN useradd --create-home --uid 10001 search && mkdir -p /data && chown search /data
USER search
ENV SEARCH_DATA_DIR=/data XDG_CACHE_HOME=/data/cache

CMD ["python", "-m", "search", "run", "--study", "lr"]
