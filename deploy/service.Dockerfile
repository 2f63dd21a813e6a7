# One image for any of the four services (the service is chosen by the command).
# Minimal on purpose: per-service, multi-stage, non-root images are issue #3.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY demo ./demo
RUN pip install --no-cache-dir .
ENV PYTHONUNBUFFERED=1
