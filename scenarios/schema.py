"""The scenario file: pydantic models of its YAML, and loading with clear errors.

``load_scenario(path)`` reads a YAML file, validates it and returns a
:class:`Scenario` with every default filled in; a bad file raises
:class:`ScenarioError` listing each problem with its field path and, where
the YAML parser knows it, its line. ``Scenario.resolved()`` gives the plain
dict that, written back as YAML, repeats the run exactly.

Durations are written as ``"15min"``, ``"1h"``, ``"2d"`` or seconds; times as
ISO 8601 (without an offset they are read in ``period.timezone``). Relative
file paths are taken from the scenario file's folder.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ScenarioError(ValueError):
    """An invalid scenario. ``problems`` lists ``(field path, line or None, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, int | None, str]]):
        self.source = source
        self.problems = problems
        lines = [f"  {fld}{f' (line {line})' if line else ''}: {msg}"
                 for fld, line, msg in problems]
        super().__init__(f"invalid scenario {source}:\n" + "\n".join(lines))


def _duration_s(value: Any) -> Any:
    """Parse '15min', '1h', '2d', 'PT1H' or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '15min', '1h' or seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return pd.Timedelta(value.strip()).total_seconds()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{value!r} is not a duration (write '15min', '1h', '2d' "
                             "or seconds)") from exc
    raise ValueError("expected a duration such as '15min', '1h' or seconds")


DurationS = Annotated[float, BeforeValidator(_duration_s)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# -- fleet -------------------------------------------------------------------------
class GeneratorOptions(_Model):
    n_sites: int = Field(342, ge=1, le=20_000)
    seed: int = 0
    capacity_mw: float | None = Field(None, gt=0)


class AddEvChargers(_Model):
    per_site: int = Field(0, ge=0, le=500, description="chargers added at each chosen site")
    max_kw: float = Field(22.0, gt=0)
    connectors: int = Field(2, ge=1, le=8)
    sites: list[str] | Literal["all"] = "all"


class FleetEdits(_Model):
    battery_scale: float = Field(1.0, ge=0, description="multiplies battery kWh and kW")
    add_ev_chargers: AddEvChargers = AddEvChargers()
    remove_sites: list[str] = []


class FleetSpec(_Model):
    generator: GeneratorOptions | None = None
    file: str | None = None
    edits: FleetEdits = FleetEdits()

    @model_validator(mode="after")
    def _one_source(self) -> FleetSpec:
        if self.generator is not None and self.file is not None:
            raise ValueError("give either 'generator' or 'file', not both")
        if self.generator is None and self.file is None:
            self.generator = GeneratorOptions()
        return self


# -- period ------------------------------------------------------------------------
class Period(_Model):
    start: datetime
    end: datetime
    step: DurationS = 900.0
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a known IANA time zone") from exc
        return value

    @field_validator("step")
    @classmethod
    def _step(cls, value: float) -> float:
        if not 60.0 <= value <= 86400.0 or value != round(value):
            raise ValueError(f"step must be whole seconds between 1 min and 1 day, got {value}")
        return value

    @model_validator(mode="after")
    def _order(self) -> Period:
        tz = ZoneInfo(self.timezone)
        if self.start.tzinfo is None:
            self.start = self.start.replace(tzinfo=tz)
        if self.end.tzinfo is None:
            self.end = self.end.replace(tzinfo=tz)
        if self.end <= self.start:
            raise ValueError(f"end {self.end.isoformat()} is not after start "
                             f"{self.start.isoformat()}")
        span = (self.end - self.start).total_seconds()
        if span < self.step:
            raise ValueError("the period is shorter than one step")
        if span / self.step > 400_000:
            raise ValueError(f"{span / self.step:.0f} steps is more than the 400,000 allowed")
        return self

    @property
    def start_s(self) -> float:
        return self.start.timestamp()

    @property
    def end_s(self) -> float:
        return self.end.timestamp()

    @property
    def n_steps(self) -> int:
        return math.floor((self.end_s - self.start_s) / self.step + 1e-9)


# -- weather, prices, carbon, EVs ----------------------------------------------------
class CloudModel(_Model):
    mean_cover: float = Field(0.35, ge=0, le=1, description="mean cloud cover (0..1)")
    variability: float = Field(0.3, ge=0, le=1, description="std of cloud cover")
    correlation_km: float = Field(60.0, gt=0, description="distance at which correlation is 1/e")
    time_constant_h: float = Field(3.0, gt=0, description="autocorrelation time")


class TemperatureModel(_Model):
    mean_c: float = 14.0
    seasonal_amplitude_c: float = Field(9.0, ge=0)
    daily_amplitude_c: float = Field(5.0, ge=0)


class WeatherSpec(_Model):
    source: Literal["clearsky_clouds", "csv"] = "clearsky_clouds"
    clouds: CloudModel = CloudModel()
    temperature: TemperatureModel = TemperatureModel()
    wind_m_s: float = Field(2.0, ge=0)
    file: str | None = Field(None, description="CSV: time, ghi, dni, dhi[, temp_air_c, wind_m_s]")

    @model_validator(mode="after")
    def _file(self) -> WeatherSpec:
        if self.source == "csv" and not self.file:
            raise ValueError("source 'csv' needs 'file'")
        return self


class SyntheticPriceSpec(_Model):
    mean_eur_per_mwh: float = 90.0
    daily_amplitude_eur_per_mwh: float = Field(45.0, ge=0)
    noise_eur_per_mwh: float = Field(8.0, ge=0)
    weekend_factor: float = Field(0.85, ge=0)


class PriceSpec(_Model):
    source: Literal["synthetic", "csv"] = "synthetic"
    file: str | None = Field(None, description="CSV: time, price_eur_per_mwh (day-ahead)")
    synthetic: SyntheticPriceSpec = SyntheticPriceSpec()
    feed_in_eur_per_mwh: float = 60.0

    @model_validator(mode="after")
    def _file(self) -> PriceSpec:
        if self.source == "csv" and not self.file:
            raise ValueError("source 'csv' needs 'file'")
        return self


class CarbonSpec(_Model):
    source: Literal["profile", "csv"] = "profile"
    mean_kg_per_mwh: float = Field(350.0, ge=0)
    midday_dip_kg_per_mwh: float = Field(120.0, ge=0)
    file: str | None = Field(None, description="CSV: time, co2_kg_per_mwh")

    @model_validator(mode="after")
    def _file(self) -> CarbonSpec:
        if self.source == "csv" and not self.file:
            raise ValueError("source 'csv' needs 'file'")
        return self


class EvSpec(_Model):
    sessions_per_connector_per_day: float = Field(1.2, ge=0, le=48)
    growth: float = Field(1.0, ge=0, description="multiplies the session rate")
    arrival_hour_mean: float = Field(10.0, ge=0, lt=24)
    arrival_hour_sd: float = Field(3.5, ge=0)
    dwell_h_mean: float = Field(3.0, gt=0)
    energy_kwh_mean: float = Field(25.0, gt=0)
    energy_kwh_sd: float = Field(10.0, ge=0)


# -- events -------------------------------------------------------------------------
def _yaml_off(value: Any) -> Any:
    # YAML 1.1 reads a bare ``off`` as false.
    return "off" if value is False else value


class _Event(_Model):
    start: datetime
    duration: DurationS | None = Field(None, description="none: until the end")


class SiteOutage(_Event):
    type: Literal["site_outage"]
    sites: list[str] = Field(min_length=1)
    mode: Annotated[Literal["off", "islanded"], BeforeValidator(_yaml_off)] = "off"


class DeviceFailure(_Event):
    type: Literal["device_failure"]
    devices: list[str] = Field(min_length=1)


class CommLoss(_Event):
    type: Literal["comm_loss"]
    sites: list[str] = Field(min_length=1)


class PriceSpike(_Event):
    type: Literal["price_spike"]
    factor: float = Field(1.0, ge=0, description="multiplies the import price")
    add_eur_per_mwh: float = 0.0


class FeederLimit(_Event):
    type: Literal["feeder_limit"]
    feeders: list[str] = Field(min_length=1)
    import_limit_kw: float | None = Field(None, ge=0)
    export_limit_kw: float | None = Field(None, ge=0)


Event = Annotated[SiteOutage | DeviceFailure | CommLoss | PriceSpike | FeederLimit,
                  Field(discriminator="type")]


# -- strategy and outputs -------------------------------------------------------------
class ForecastError(_Model):
    pv: float = Field(0.0, ge=0, description="relative std of the PV forecast error")
    load: float = Field(0.0, ge=0, description="relative std of the load forecast error")
    price: float = Field(0.0, ge=0, description="relative std of the price forecast error")


class StrategySpec(_Model):
    kind: Literal["none", "rule", "optimizer"] = "rule"
    curtail_to_export_limit: bool = True
    cadence: DurationS = 3600.0
    horizon: DurationS = 86400.0
    forecast_error: ForecastError = ForecastError()

    @model_validator(mode="after")
    def _cadence(self) -> StrategySpec:
        if self.cadence <= 0 or self.horizon < self.cadence:
            raise ValueError("need 0 < cadence <= horizon")
        return self


DEVICE_VARIABLES = ("p_kw", "soc", "e_kwh")


class OutputSpec(_Model):
    device_variables: list[Literal["p_kw", "soc", "e_kwh"]] = ["p_kw", "soc"]
    device_types: list[Literal["pv", "battery", "ev_charger", "load"]] = ["battery"]
    time_chunk_steps: int = Field(672, ge=1, le=100_000)


class Scenario(_Model):
    name: str = "scenario"
    description: str = ""
    seed: int = 0
    fleet: FleetSpec = FleetSpec()
    period: Period
    weather: WeatherSpec = WeatherSpec()
    prices: PriceSpec = PriceSpec()
    carbon: CarbonSpec = CarbonSpec()
    ev: EvSpec = EvSpec()
    initial_soc: float = Field(0.5, ge=0, le=1)
    events: list[Event] = []
    strategy: StrategySpec = StrategySpec()
    outputs: OutputSpec = OutputSpec()

    @model_validator(mode="after")
    def _event_times(self) -> Scenario:
        tz = ZoneInfo(self.period.timezone)
        for ev in self.events:
            if ev.start.tzinfo is None:
                ev.start = ev.start.replace(tzinfo=tz)
        return self

    def resolved(self) -> dict[str, Any]:
        """Every field with its value (defaults filled in), as plain YAML-able data."""
        return self.model_dump(mode="json")


# -- loading ------------------------------------------------------------------------
_PATH_FIELDS = (("fleet", "file"), ("weather", "file"), ("prices", "file"), ("carbon", "file"))


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, override and validate a scenario file.

    Parameters
    ----------
    path : str or Path
        The YAML file.
    overrides : dict, optional
        Dotted field paths to values (``{"fleet.edits.battery_scale": 2}``),
        applied before validation (see :func:`apply_overrides`).

    Raises
    ------
    ScenarioError
        Naming each bad field (and its line in the file).
    """
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(source, [("-", None, f"cannot read the file: {exc.strerror}")]) from exc
    return parse_scenario(text, source=source, base_dir=path.parent, overrides=overrides)


def parse_scenario(text: str, source: str = "scenario", base_dir: str | Path = ".",
                   overrides: dict[str, Any] | None = None) -> Scenario:
    """Validate scenario YAML text; see :func:`load_scenario`."""
    try:
        data = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(source, [("-", line, f"not valid YAML: {exc}")]) from exc
    if not isinstance(data, dict):
        raise ScenarioError(source, [("-", None, "the file must be a YAML mapping of fields")])
    base = Path(base_dir)
    for sec, key in _PATH_FIELDS:
        sub = data.get(sec)
        if isinstance(sub, dict) and isinstance(sub.get(key), str):
            sub[key] = str((base / sub[key]).resolve())
    if overrides:
        apply_overrides(data, overrides, source)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            problems.append((".".join(loc) or "-", _line_of(lines, loc), err["msg"]))
        raise ScenarioError(source, problems) from None
    missing = [(".".join(k), None, f"file not found: {getattr(getattr(scenario, k[0]), k[1])}")
               for k in _PATH_FIELDS
               if getattr(getattr(scenario, k[0]), k[1]) is not None
               and not Path(getattr(getattr(scenario, k[0]), k[1])).exists()]
    if missing:
        raise ScenarioError(source, [(f, _line_of(lines, tuple(f.split("."))), m)
                                     for f, _, m in missing])
    return scenario


# Short names for ``--set`` (sweeps and the CLI).
ALIASES: dict[str, str] = {
    "battery_scale": "fleet.edits.battery_scale",
    "price_file": "prices.file",
    "weather_file": "weather.file",
    "carbon_file": "carbon.file",
    "ev_growth": "ev.growth",
    "strategy": "strategy.kind",
    "seed": "seed",
    "feed_in": "prices.feed_in_eur_per_mwh",
    "cloud_cover": "weather.clouds.mean_cover",
}


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], source: str = "") -> None:
    """Set dotted field paths (or their :data:`ALIASES`) in raw scenario data, in place.

    A ``*.file`` value that is a relative path is taken from the current folder,
    and setting ``prices.file`` / ``weather.file`` / ``carbon.file`` also sets
    that section's ``source`` to ``csv``.
    """
    for key, value in overrides.items():
        dotted = ALIASES.get(key, key)
        parts = dotted.split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ScenarioError(source, [(dotted, None, f"cannot set inside {part!r}")])
            node = child
        if parts[-1] == "file" and isinstance(value, str):
            value = str(Path(value).resolve())
            if parts[0] in ("prices", "weather", "carbon"):
                node["source"] = "csv"
        node[parts[-1]] = value


def _key_lines(node: Any, prefix: tuple[str, ...] = (),
               out: dict[tuple[str, ...], int] | None = None) -> dict[tuple[str, ...], int]:
    """Map each field path of a composed YAML tree to its (1-based) line."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            out[path] = key.start_mark.line + 1
            _key_lines(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            out[path] = item.start_mark.line + 1
            _key_lines(item, path, out)
    return out


def _line_of(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for n in range(len(loc), 0, -1):
        # Discriminated unions add the tag to the path (events.0.site_outage.sites).
        cand = tuple(p for p in loc[:n])
        if cand in lines:
            return lines[cand]
        stripped = tuple(p for i, p in enumerate(cand) if not (i == 2 and cand[0] == "events"))
        if stripped in lines:
            return lines[stripped]
    return None
