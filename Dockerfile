FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY memq memq
COPY gateway gateway
COPY worker worker
COPY memory_service memory_service
# torch first and pinned. Point TORCH_INDEX_URL at a CPU-only wheel index to keep the
# image small (PyPI's default torch build for x86-64 bundles CUDA).
ARG TORCH_INDEX_URL=
RUN pip install --no-cache-dir torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
 && pip install --no-cache-dir .
EXPOSE 8000 8001
