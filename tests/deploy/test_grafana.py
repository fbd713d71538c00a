"""deploy/grafana: the dashboard JSON is well formed, uses the provisioned data source and
only series the service exports; provisioning matches the compose mounts."""

from __future__ import annotations

import json
import re

from tests.deploy.tools import DEPLOY, load_yaml, metric_series

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SERIES = re.compile(r"\b(ecogrid_[a-z0-9_]+)\b")


def _datasource_uids() -> set[str]:
    files = (GRAFANA / "provisioning" / "datasources").glob("*.yml")
    return {d["uid"] for f in files for d in load_yaml(f)["datasources"]}


def test_dashboards_are_valid_json_with_unique_panels():
    assert DASHBOARDS
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        assert dash["uid"] and dash["title"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        cells = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{p['title']}: outside the grid"
            mine = {(g["x"] + i, g["y"] + j) for i in range(g["w"]) for j in range(g["h"])}
            assert not cells & mine, f"{path.name}: panel {p['title']!r} overlaps another"
            cells |= mine
            assert p["targets"], f"{p['title']}: no query"


def test_every_query_uses_the_provisioned_datasource_and_exported_series():
    uids = _datasource_uids()
    exported = metric_series()
    used = set()
    for path in DASHBOARDS:
        for p in json.loads(path.read_text())["panels"]:
            assert p["datasource"]["uid"] in uids, p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] in uids, p["title"]
                assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
                used |= set(SERIES.findall(t["expr"]))
    assert used <= exported, (f"dashboard series not in api/live/metrics.py: "
                              f"{sorted(used - exported)}")
    # The dashboard shows every metric family the service has (created-timestamps aside).
    families = {s for s in exported if not s.endswith("_created")}
    shown = {re.sub(r"_(bucket|sum|count)$", "", s) for s in used}
    missing = {s for s in families if re.sub(r"_(bucket|sum|count)$", "", s) not in shown}
    assert not missing, f"metrics not on the dashboard: {sorted(missing)}"


def test_provisioning_points_at_the_mounted_dashboards():
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "ecogrid.yml")["providers"]
    compose = load_yaml(DEPLOY.parent / "docker-compose.yml")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    for prov in providers:
        path = prov["options"]["path"]
        assert mounts.get(path) == "./deploy/grafana/dashboards", path
    ds = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert ds[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
