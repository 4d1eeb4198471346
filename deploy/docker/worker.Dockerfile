# syntax=docker/dockerfile:1
# A jq-worker image with your own handlers: copy this file next to your handler package and
# change the three marked lines. As shipped it builds the example in deploy/docker/:
#
#   docker build -f deploy/docker/Dockerfile -t jobq:0.1.0 .             (the base image, once)
#   docker build -f deploy/docker/worker.Dockerfile -t jobq-worker-example deploy/docker
#   docker run --init -e JQ_WORKER_SERVER_ADDR=jq-server:50051 -e JQ_WORKER_TOKEN=... \
#       jobq-worker-example
#
# The base is the jobq image of deploy/docker/Dockerfile, tagged with jobq's version.
ARG JOBQ_VERSION=0.1.0
FROM jobq:${JOBQ_VERSION}

# Your handlers' own dependencies, if they have any: install them as root into jobq's
# environment, then drop back to the image's user (uid 10001), e.g.
#   USER root
#   COPY requirements.txt /tmp/requirements.txt
#   RUN pip install --no-cache-dir -r /tmp/requirements.txt
#   USER 10001:10001

# (1) Your handler package, owned by root and so read-only for the worker.
COPY example_handlers/ /app/example_handlers/

# (2) The modules the worker trusts (`--import`; comma-separated, like every list setting).
# /app is on PYTHONPATH, so a package copied there imports by its name.
# (3) The worker's own health port (8081, worker.health_port) for the image's HEALTHCHECK.
ENV PYTHONPATH=/app \
    JQ_WORKER_IMPORTS=example_handlers.tasks \
    JQ_HEALTHCHECK_URL=http://127.0.0.1:8081/healthz

# The worker runs as the image's non-root user: command jobs then run as that user too, and
# nothing the handlers do can write to /opt/venv or /app.
USER 10001:10001

# jq-worker: 8081 /healthz /readyz, 9091 /metrics.
EXPOSE 8081 9091

CMD ["jq-worker"]
