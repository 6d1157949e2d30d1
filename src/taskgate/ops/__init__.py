"""What operators see of a running taskgate: structured logs (``logs``), Prometheus
metrics (``metrics``), one line and the metrics per task transition (``transitions``),
each task's own timeline in the store (``timeline``), cluster statistics (``stats``),
health (``health``) and, with the ``tracing`` extra, OpenTelemetry spans (``tracing``)."""
