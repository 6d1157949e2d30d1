"""Setting tracing up from the settings: off by default (and then OpenTelemetry's SDK is not
even imported), a clear error when enabled without the ``tracing`` extra, and a provider
with the configured exporter otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from taskgate.config import TracingSettings
from taskgate.ops import tracing

SDK_MODULES = [
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.sdk.resources",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
]


def test_tracing_is_off_by_default() -> None:
    assert tracing.from_settings(TracingSettings()) is None
    assert tracing.current_trace() is None


def test_with_tracing_off_the_sdk_is_never_imported() -> None:
    script = (
        "import sys\n"
        "from taskgate.api import create_app\n"
        "from taskgate.config import load\n"
        "import taskgate.scheduling, taskgate.worker\n"
        "create_app(load(None, {}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_enabled_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "_provider", None)
    for name in SDK_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(tracing.TracingUnavailable, match=r"pip install 'taskgate\[tracing\]'"):
        tracing.from_settings(TracingSettings(enabled=True))
    assert tracing._provider is None  # the next try imports again


@pytest.mark.parametrize(
    ("conf", "exporter", "endpoint"),
    [
        ({"exporter": "console"}, "ConsoleSpanExporter", None),
        ({"endpoint": "http://collector:4318"}, "OTLPSpanExporter", "/v1/traces"),
        ({"endpoint": "http://collector:4318/"}, "OTLPSpanExporter", "/v1/traces"),
        ({"endpoint": "http://c:4318/custom/traces"}, "OTLPSpanExporter", "/custom/traces"),
    ],
)
def test_enabled_builds_the_process_s_provider_once(
    monkeypatch: pytest.MonkeyPatch, conf: dict[str, str], exporter: str, endpoint: str | None
) -> None:
    monkeypatch.setattr(tracing, "_provider", None)
    settings = TracingSettings(enabled=True, service_name="tg-test", **conf)
    first = tracing.from_settings(settings)
    provider = tracing._provider
    try:
        assert first is not None and provider is not None
        assert tracing.from_settings(settings) is not None and tracing._provider is provider
        assert provider.resource.attributes["service.name"] == "tg-test"
        [processor] = provider._active_span_processor._span_processors
        made = processor._batch_processor._exporter  # the SDK's internals, 1.45
        assert type(made).__name__ == exporter
        if endpoint is not None:
            assert made._endpoint.endswith(endpoint) and "//" not in made._endpoint[8:]
    finally:
        provider.shutdown()
