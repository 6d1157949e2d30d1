# taskgate: one image for every role. `serve` (default) runs API + workers in one process;
# `api` and `worker` are the distributed mode's roles (see README, "Running distributed").
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir '.[postgres,redis,s3,tracing]' \
 && useradd --system --home /data taskgate \
 && mkdir -p /data && chown taskgate /data

USER taskgate
WORKDIR /data
ENV TASKGATE_HOST=0.0.0.0
EXPOSE 8000
ENTRYPOINT ["taskgate"]
CMD ["serve"]
