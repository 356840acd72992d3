FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY memq memq
COPY gateway gateway
COPY worker worker
COPY memory_service memory_service
# torch first and pinned. PyPI's torch 2.13.0 for x86-64 is the CUDA build (several GB);
# pass TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for the CPU-only wheel.
ARG TORCH_INDEX_URL=
RUN pip install --no-cache-dir torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
 && pip install --no-cache-dir .
EXPOSE 8000 8001
