# syntax=docker/dockerfile:1
# Build stage: a virtual environment with the CPU build of torch and the project. The install steps are
# docker/install.sh, which CI also runs outside Docker (.ci/docker-recipe) to check this recipe.
FROM python:3.11-slim AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY docker/install.sh ./docker/
RUN sh docker/install.sh dependencies /opt/venv
COPY pyproject.toml README.md ./
COPY model ./model
COPY service ./service
COPY training ./training
RUN sh docker/install.sh project /opt/venv /src

# Runtime stage: the environment only (the shipped model is package data in it), as a non-root user.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
RUN groupadd --gid 10001 stance && useradd --create-home --uid 10001 --gid 10001 stance
USER 10001:10001
WORKDIR /home/stance
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]
CMD ["stance", "serve", "--host", "0.0.0.0", "--port", "8000"]
