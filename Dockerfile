# One image for the gateway, the memory service and the workers; docker-compose.yml gives
# each its command. CPU only. Build: docker build -t memq .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- deps: a virtualenv with every dependency, rebuilt only when pyproject.toml changes ---
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# PyPI's x86-64 torch wheel is the CUDA build (several GB of NVIDIA libraries); the CPU wheel
# comes from PyTorch's own index. Same version as the pin in pyproject.toml (a test checks).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0
COPY pyproject.toml /build/pyproject.toml
# The dependencies alone, read from pyproject.toml: the source is not copied yet, so editing it
# does not invalidate this layer. torch==2.13.0 is already satisfied by 2.13.0+cpu.
RUN python -c "import tomllib; deps = tomllib.load(open('/build/pyproject.toml', 'rb'))['project']['dependencies']; print(*deps, sep=chr(10))" > /build/requirements.txt \
 && pip install -r /build/requirements.txt "setuptools>=70.1"

# --- runtime: the virtualenv, the source, a non-root user ---
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/memq/.cache/huggingface \
    MEMQ_DATA_DIR=/data
# The directories named volumes mount over exist and belong to memq, so a fresh volume is
# created writable by the non-root user.
RUN useradd --create-home --uid 10001 --user-group memq \
 && mkdir -p /data /home/memq/.cache/huggingface \
 && chown -R memq:memq /data /home/memq/.cache
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY memq memq
COPY gateway gateway
COPY worker worker
COPY memory_service memory_service
RUN pip install --no-deps --no-build-isolation . && rm -rf build memq.egg-info
USER memq
EXPOSE 8000 8001
# docker-compose.yml runs `python -m memory_service` and `python -m worker` from this image too.
CMD ["python", "-m", "gateway"]
