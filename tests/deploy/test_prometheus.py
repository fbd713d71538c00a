"""deploy/prometheus: scrape config and alert rules, checked and unit-tested by promtool,
and every series they use exists on the service's /metrics (api/live/metrics.py)."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.tools import DEPLOY, load_yaml, metric_series, require_tool

PROM = DEPLOY / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
SERIES = re.compile(r"\b(ecogrid_[a-z0-9_]+)\b")

# What the issue asks the alerts to cover -> the alert that does.
REQUIRED_ALERTS = {
    "ingest stalled": "EcoGridIngestStalled",
    "rejected-message rate": "EcoGridRejectedMessagesHigh",
    "optimizer fallbacks": "EcoGridOptimizerFallbacks",
    "command expiries": "EcoGridCommandsExpiring",
    "WebSocket errors": "EcoGridWebSocketErrors",
}


def _rules() -> list[dict]:
    return [r for f in RULES for g in load_yaml(f)["groups"] for r in g["rules"]]


def _promtool(*args: str, cwd=PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_promtool_accepts_the_configs_and_their_rule_files():
    out = _promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(RULES)} rule files found" in out.stdout + out.stderr


def test_promtool_accepts_the_k8s_config(tmp_path):
    """Debian's promtool is built without Kubernetes discovery, so the discovery block is
    swapped for a static target; everything else (relabelling regexes, rule files) is
    checked as written. A promtool with Kubernetes discovery checks the file itself."""
    import shutil

    text = (PROM / "prometheus-k8s.yml").read_text()
    out = _promtool("check", "config", "prometheus-k8s.yml")
    if "kubernetes_sd_configs not found" in out.stdout + out.stderr:
        cfg = load_yaml(PROM / "prometheus-k8s.yml")
        for job in cfg["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["ecogrid:8000"]}]
        shutil.copytree(PROM / "rules", tmp_path / "rules")
        (tmp_path / "prometheus-k8s.yml").write_text(yaml.safe_dump(cfg))
        out = _promtool("check", "config", "prometheus-k8s.yml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(RULES)} rule files found" in out.stdout + out.stderr
    assert "kubernetes_sd_configs" in text


def test_the_k8s_scrape_config_keeps_the_pods_annotated_in_deploy_k8s():
    from tests.deploy.tools import load_yaml_all

    cfg = load_yaml(PROM / "prometheus-k8s.yml")
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "ecogrid")
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    annotation = keep["source_labels"][0].removeprefix("__meta_kubernetes_pod_annotation_")
    pods = [d for p in (DEPLOY / "k8s").glob("*.yaml") for d in load_yaml_all(p)
            if d["kind"] == "Deployment"]
    assert pods
    for dep in pods:
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        key = next(k for k in ann if re.sub(r"[^a-z0-9]", "_", k) == annotation)
        assert re.fullmatch(keep["regex"], ann[key])
        ports = {p["containerPort"] for c in dep["spec"]["template"]["spec"]["containers"]
                 for p in c["ports"]}
        assert int(ann["prometheus.io/port"]) in ports
    namespaces = job["kubernetes_sd_configs"][0]["namespaces"]["names"]
    assert namespaces == [load_yaml(DEPLOY / "k8s" / "kustomization.yaml")["namespace"]]


def test_promtool_accepts_the_rules():
    out = _promtool("check", "rules", *[str(f) for f in RULES])
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_of_the_alerts_pass():
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    out = _promtool("test", "rules", *[str(t) for t in tests])
    assert out.returncode == 0, out.stdout + out.stderr
    # Every alert is exercised by at least one unit test case.
    tested = {m for t in tests for m in re.findall(r"alertname: (\w+)", t.read_text())}
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    assert alerts <= tested, f"alerts without a promtool test: {sorted(alerts - tested)}"


def test_promtool_rejects_a_broken_rule(tmp_path):
    # The check above could not fail if promtool accepted anything.
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n"
                   "        expr: rate(ecogrid_ingest_messages_total[5m] > 0\n")
    out = _promtool("check", "rules", str(bad))
    assert out.returncode != 0


def test_the_issue_s_alerts_exist_with_severity_and_summary():
    alerts = {r["alert"]: r for r in _rules() if "alert" in r}
    for what, name in REQUIRED_ALERTS.items():
        assert name in alerts, f"no alert for {what}"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name


def test_every_series_in_the_rules_is_exported_by_the_service():
    exported = metric_series()
    used = {s for r in _rules() for s in SERIES.findall(r["expr"])}
    assert used, "the rules use no ecogrid_ series"
    assert used <= exported, (f"series used in alert rules but not in api/live/metrics.py: "
                              f"{sorted(used - exported)}")


def test_the_scrape_job_points_at_the_service_port():
    cfg = load_yaml(PROM / "prometheus.yml")
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "ecogrid")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    compose = load_yaml(DEPLOY.parent / "docker-compose.yml")
    serve = compose["services"]["ecogrid"]["command"]
    port = serve[serve.index("--port") + 1]
    assert job["static_configs"][0]["targets"] == [f"ecogrid:{port}"]


def test_the_service_serves_metrics_at_that_path():
    from api.http.routes import system

    paths = {getattr(r, "path", None) for r in system.router.routes}
    assert {"/metrics", "/healthz"} <= paths


def test_recording_rules_follow_the_level_metric_operation_convention():
    records = [r["record"] for r in _rules() if "record" in r]
    assert records
    for name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z_]+:[a-z0-9]+", name), name
