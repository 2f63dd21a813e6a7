# The demo stand-in for the police gateway (demo/police_receiver.py), for docker-compose.yml.
#   docker build -f deploy/images/police-receiver.Dockerfile -t dcsp-police-receiver .
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS deps
WORKDIR /build
COPY pyproject.toml ./
RUN python -m venv /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --quiet -r requirements.txt

FROM ${BASE_IMAGE}
RUN useradd --uid 10001 --user-group --home-dir /app --no-create-home dcsp && mkdir -p /app
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY demo/__init__.py demo/police_receiver.py demo/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RECEIVER_HOST=0.0.0.0 \
    RECEIVER_PORT=8099
USER 10001
EXPOSE 8099
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('RECEIVER_PORT', '8099') + '/health', timeout=4)"
CMD ["python", "-m", "demo.police_receiver"]
