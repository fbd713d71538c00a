"""``ecogrid scenario run`` and ``compare``: files, table, plots, report, clear errors."""

from __future__ import annotations

import json

import pytest

from api.cli.main import main
from scenarios.compare import compare_runs, daily_cost_eur
from scenarios.results import open_results
from tests.scenarios.helpers import tiny, write


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    none_file = write(root, tiny(strategy={"kind": "none"}), "none.yaml")
    rule_file = write(root, tiny(), "rule.yaml")
    assert main(["scenario", "run", str(none_file), "--out", str(root / "none"), "--quiet"]) == 0
    assert main(["scenario", "run", str(rule_file), "--out", str(root / "rule")]) == 0
    return root


def test_compare_table_plots_and_report(two_runs, capsys) -> None:
    root = two_runs
    capsys.readouterr()
    assert main(["scenario", "compare", str(root / "none"), str(root / "rule"),
                 "--out", str(root / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "net_cost_eur" in out and "Δ rule" in out
    for png in ("fleet_flows", "daily_cost", "battery_soc", "peak_import"):
        assert (root / "cmp" / f"{png}.png").stat().st_size > 1000
    page = (root / "cmp" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "http://" not in page and "https://" not in page  # self-contained


def test_differences_are_against_the_first_run(two_runs, tmp_path) -> None:
    root = two_runs
    report = compare_runs([root / "none", root / "rule"], tmp_path)
    a = json.loads((root / "none" / "kpis.json").read_text())["fleet"]
    b = json.loads((root / "rule" / "kpis.json").read_text())["fleet"]
    assert report.table.loc["imported_mwh", "Δ rule"] == pytest.approx(
        b["imported_mwh"] - a["imported_mwh"])
    # The daily cost from the stored series agrees with the KPI.
    cost = daily_cost_eur(open_results(root / "rule")).sum()
    assert cost == pytest.approx(b["net_cost_eur"], rel=1e-3)


def test_invalid_file_exits_with_a_message_and_no_traceback(tmp_path, capsys) -> None:
    bad = write(tmp_path, tiny(strategy={"kind": "rule", "cadance": "1h"}))
    assert main(["scenario", "run", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "strategy.cadance" in err and "line" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_run_refuses_to_overwrite_and_compare_refuses_missing(two_runs, tmp_path,
                                                               capsys) -> None:
    root = two_runs
    assert main(["scenario", "run", str(root / "rule.yaml"), "--out", str(root / "rule"),
                 "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["scenario", "compare", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
