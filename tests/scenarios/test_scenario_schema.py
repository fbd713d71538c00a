"""Scenario file validation: errors name the field and line; defaults are filled in."""

from __future__ import annotations

import pytest
import yaml

from scenarios.schema import ScenarioError, load_scenario, parse_scenario
from tests.scenarios.helpers import EXAMPLES, tiny, write


def test_defaults_are_filled_and_resolved_file_repeats_the_scenario() -> None:
    scenario = parse_scenario(tiny())
    assert scenario.period.step == 900.0
    assert scenario.period.n_steps == 96
    assert scenario.period.start.utcoffset().total_seconds() == 7200  # Berlin summer time
    resolved = scenario.resolved()
    assert resolved["weather"]["clouds"]["mean_cover"] == 0.35
    assert resolved["strategy"]["cadence"] == 3600.0
    again = parse_scenario(yaml.safe_dump(resolved))
    assert again == scenario


def test_errors_name_every_bad_field_with_its_line(tmp_path) -> None:
    text = """name: bad
period:
  start: 2025-06-02
  end: 2025-06-01
  step: 15 parsecs
fleet:
  edits:
    battery_scale: -1
strategy:
  kind: magic
  cadance: 1h
"""
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, text))
    problems = {fld: line for fld, line, _ in err.value.problems}
    assert problems["period.step"] == 5
    assert problems["fleet.edits.battery_scale"] == 8
    assert problems["strategy.kind"] == 10
    assert problems["strategy.cadance"] == 11
    assert "line 8" in str(err.value) and "battery_scale" in str(err.value)


def test_end_before_start_is_refused() -> None:
    with pytest.raises(ScenarioError, match="is not after start"):
        parse_scenario(tiny(period={"start": "2025-06-02", "end": "2025-06-01"}))


def test_event_errors_point_into_the_event_list() -> None:
    text = tiny(events=[{"type": "site_outage", "sites": ["S0001"], "start": "2025-06-02T10:00",
                         "mode": "sideways"}])
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text)
    fld, line, msg = err.value.problems[0]
    assert fld.startswith("events.0") and "mode" in fld
    assert line is not None and "islanded" in msg


def test_bare_yaml_off_is_read_as_the_off_mode() -> None:
    text = tiny().replace("strategy:", "events:\n- type: site_outage\n  sites: [S0001]\n"
                                       "  start: 2025-06-02T10:00\n  mode: off\nstrategy:")
    assert parse_scenario(text).events[0].mode == "off"


def test_not_yaml_gives_the_line() -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario("name: [unclosed\nseed: 1\n")
    assert err.value.problems[0][1] is not None


def test_missing_csv_is_refused_before_running(tmp_path) -> None:
    text = tiny(prices={"source": "csv", "file": "nowhere.csv"})
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(write(tmp_path, text))


def test_overrides_use_aliases_and_switch_the_source(tmp_path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("time,price_eur_per_mwh\n2025-06-01T00:00Z,50\n")
    scenario = load_scenario(write(tmp_path, tiny()),
                             {"battery_scale": 2, "price_file": str(csv), "seed": 9})
    assert scenario.fleet.edits.battery_scale == 2.0
    assert scenario.prices.source == "csv" and scenario.prices.file == str(csv)
    assert scenario.seed == 9


@pytest.mark.parametrize("name", ["reference_week_none", "reference_week_rule",
                                  "reference_week_optimizer", "outage_day", "year_rule",
                                  "small_sweep"])
def test_examples_are_valid(name: str) -> None:
    scenario = load_scenario(EXAMPLES / f"{name}.yaml")
    assert scenario.period.n_steps > 0
