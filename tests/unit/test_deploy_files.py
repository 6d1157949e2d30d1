"""The Dockerfile, compose.yaml and the monitoring files (deploy/prometheus.yml, the Grafana
dashboard and its provisioning) stay in step with the code: the commands, settings, URLs and
metric names they use are ones taskgate knows (no Docker here to run them)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from taskgate import config, files
from taskgate.cli import main
from taskgate.config import Settings
from taskgate.ops.metrics import Metrics, QueueGauges
from taskgate.store.stats import QueueSnapshot

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def taskgate_services() -> dict:
    return {n: s for n, s in compose()["services"].items() if s.get("image") == "taskgate:latest"}


def test_compose_runs_gateways_and_workers_with_real_commands() -> None:
    services = taskgate_services()
    assert {s["command"][0] for s in services.values()} == {"api", "worker"}
    for s in services.values():
        result = CliRunner().invoke(main, [*s["command"], "--help"])
        assert result.exit_code == 0, result.output


def test_compose_settings_are_ones_the_config_reads(monkeypatch: object) -> None:
    for s in taskgate_services().values():
        env = s["environment"]
        known = set(config._ENV_OVERRIDES) | {"TASKGATE_CONFIG"}
        assert set(env) <= known
        conf = REPO / "deploy" / "taskgate.yaml"
        assert env["TASKGATE_CONFIG"].endswith(conf.name)
        settings = config.load(conf, env={k: v for k, v in env.items() if k != "TASKGATE_CONFIG"})
        assert settings.store_url.startswith("postgresql://")
        assert settings.events_url and settings.events_url.startswith("redis://")
        files.from_url(settings.files_url, settings.files_key_id, "x")  # a URL it accepts


def test_the_image_installs_extras_that_exist() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    line = next(li for li in (REPO / "Dockerfile").read_text().splitlines() if "pip install" in li)
    wanted = line.split("'.[", 1)[1].split("]'", 1)[0].split(",")
    assert set(wanted) <= set(extras)


def exported_metrics() -> set[str]:
    """The series a process exports, as a dashboard names them (histograms by their base
    name: Prometheus adds _bucket, _sum and _count), read from a live registry."""
    m = Metrics()
    snapshot = QueueSnapshot(0.0, running={("r", "i"): 1}, allowance={("r", "i", "tokens"): 1.0})
    gauges = QueueGauges(Settings(), lambda now: None, lambda: {})
    gauges.snapshot = snapshot
    m.registry.register(gauges)
    kinds = {"counter": "_total", "histogram": "", "gauge": ""}
    return {f.name + kinds[f.type] for f in m.registry.collect()}


EXPORTED_METRICS = exported_metrics()
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DASHBOARD = REPO / "deploy" / "grafana" / "taskgate-dashboard.json"


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for p in panels:
        out.append(p)
        out.extend(all_panels(p.get("panels", [])))  # a collapsed row holds its panels
    return out


def metrics_in(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"taskgate_[a-z_]+", expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in EXPORTED_METRICS:
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def dashboard_queries() -> list[str]:
    d = dashboard()
    exprs = [t["expr"] for p in all_panels(d["panels"]) for t in p.get("targets", [])]
    for var in d["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]
            exprs.append(q["query"] if isinstance(q, dict) else q)
    return exprs


def test_the_dashboard_queries_only_exported_metrics_and_shows_them_all() -> None:
    used: set[str] = set()
    for expr in dashboard_queries():
        names = metrics_in(expr)
        assert names, expr
        assert names <= EXPORTED_METRICS, (expr, names - EXPORTED_METRICS)
        used |= names
    assert used == EXPORTED_METRICS


def test_the_dashboard_uses_the_provisioned_data_source() -> None:
    d = dashboard()
    assert (d["uid"], d["title"]) == ("taskgate", "taskgate")
    assert "__inputs" not in d and "DS_PROMETHEUS" not in DASHBOARD.read_text()
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("route", "instance"):
        assert variables[name]["multi"] and "label_values(" in variables[name]["definition"]
    ds = {"type": "prometheus", "uid": "${datasource}"}
    panels = all_panels(d["panels"])
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        if p["type"] != "row":
            assert p["datasource"] == ds, p["title"]
            assert all(t["datasource"] == ds for t in p["targets"]), p["title"]

    provisioning = REPO / "deploy" / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["isDefault"]
    assert variables["datasource"]["current"]["value"] == source["uid"]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "taskgate.yaml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """The service's ./ bind mounts: container path -> host path in this repository."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = REPO / source
    return mounts


def test_compose_has_the_monitoring_profile() -> None:
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    assert all("profiles" not in s for s in taskgate_services().values())  # a plain `up`
    for service in services.values():
        assert all(path.exists() for path in bind_mounts(service).values())

    prometheus_mounts = bind_mounts(services["prometheus"])
    assert prometheus_mounts["/etc/prometheus/prometheus.yml"] == REPO / "deploy/prometheus.yml"
    grafana_mounts = bind_mounts(services["grafana"])
    assert (grafana_mounts["/var/lib/grafana/dashboards"] / DASHBOARD.name).exists()
    assert grafana_mounts["/etc/grafana/provisioning/datasources"].is_dir()
    assert grafana_mounts["/etc/grafana/provisioning/dashboards"].is_dir()


def test_compose_health_checks_and_the_worker_metrics_port() -> None:
    services = compose()["services"]
    assert services["worker"]["environment"]["TASKGATE_METRICS_PORT"] == "9100"
    assert "TASKGATE_METRICS_PORT" not in services["api"]["environment"]
    for name, port in (("api", 8000), ("worker", 9100)):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]  # the image has no curl
        assert f"http://127.0.0.1:{port}/health/ready" in test[3]
        compile(test[3], "healthcheck", "exec")


def test_prometheus_scrapes_every_gateway_and_worker() -> None:
    conf = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    assert conf["global"]["scrape_interval"] == "15s"
    scraped = set()
    for job in conf["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job.get("honor_labels")  # taskgate's own `instance` label wins
        for sd in job["dns_sd_configs"]:
            scraped |= {(name, sd["port"]) for name in sd["names"]}
    worker_port = int(compose()["services"]["worker"]["environment"]["TASKGATE_METRICS_PORT"])
    assert scraped == {("api", 8000), ("worker", worker_port)}
