"""deploy/grafana: the four dashboards (sync, webhooks and queue, API, SSO) are well-formed
Grafana JSON whose every query is valid PromQL (promtool parses them as recording rules). That
each names a metric the adapter exports is checked live (tests/integration/deploy/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.unit.deploy.test_alert_rules import promtool

GRAFANA = Path(__file__).resolve().parents[3] / "deploy" / "grafana"
DASHBOARDS = {path.stem: path for path in (GRAFANA / "dashboards").glob("*.json")}
# Grafana's interval macros, as Prometheus would see them once Grafana has filled them in.
MACROS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARDS[name].read_text(encoding="utf-8"))
    return document


def test_one_dashboard_each_for_sync_webhooks_api_and_sso() -> None:
    assert set(DASHBOARDS) == {"hf-sync", "hf-webhooks", "hf-api", "hf-sso"}
    uids = [load(name)["uid"] for name in DASHBOARDS]
    assert sorted(uids) == sorted(DASHBOARDS), "each dashboard's uid is its file name"


def test_panels_are_laid_out_and_query_the_chosen_prometheus() -> None:
    for name in DASHBOARDS:
        document = load(name)
        assert [v["name"] for v in document["templating"]["list"]] == ["datasource"]
        ids = [panel["id"] for panel in document["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in document["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0, (name, panel["title"])
            assert grid["x"] + grid["w"] <= 24, (name, panel["title"])
            if panel["type"] == "row":
                continue
            assert panel["title"], (name, panel["id"])
            assert panel["targets"], (name, panel["id"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert target["expr"].strip()


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = []
    for name in sorted(DASHBOARDS):
        for panel in load(name)["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for macro, value in MACROS.items():
                    expr = expr.replace(macro, value)
                rules.append(
                    {"record": f"dashboard:{name.replace('-', '_')}:{len(rules)}", "expr": expr}
                )
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rules)} rules found" in checked.stdout


def test_grafana_provisioning_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
