"""The fleet data model: sites, feeders and devices held as struct-of-arrays.

A :class:`Fleet` is immutable parameter data. Rows are sorted by site and then
by device type, so the devices of one site are contiguous (``site_start`` /
``site_stop`` give the slice) and every per-site loop in the twin and the
optimizer walks memory in order. Ids map to rows through ``*_row`` dicts that
stay stable for a given fleet content.

Fleets are built from plain records (``Fleet.from_records``), which refuses
bad input with a :class:`FleetError` that names every offending record and
field; nothing is half-loaded. They are saved to and loaded from JSON (a
readable list of records) or Parquet (one table per kind).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

# Device type codes. The order is the sort order inside a site.
PV, BATTERY, EV_CHARGER, LOAD = 0, 1, 2, 3
DEVICE_TYPES: tuple[str, ...] = ("pv", "battery", "ev_charger", "load")
TYPE_CODE: dict[str, int] = {name: code for code, name in enumerate(DEVICE_TYPES)}

# Load profile classes; the twin's load input is a fraction of peak per class.
LOAD_PROFILES: tuple[str, ...] = ("residential", "commercial", "industrial", "flat")
PROFILE_CODE: dict[str, int] = {name: code for code, name in enumerate(LOAD_PROFILES)}

SITE_STATUSES: tuple[str, ...] = ("active", "inactive", "maintenance")

# Per-type numeric fields: name -> (unit, lower bound, upper bound, lower bound inclusive).
_NUMERIC_FIELDS: dict[str, dict[str, tuple[str, float, float, bool]]] = {
    "pv": {
        "pv_kwp": ("kWp", 0.0, math.inf, False),
        "inverter_kw": ("kW", 0.0, math.inf, False),
        "tilt_deg": ("deg", 0.0, 90.0, True),
        "azimuth_deg": ("deg", 0.0, 360.0, True),
        "temp_coeff_per_c": ("1/degC", -0.02, 0.0, True),
    },
    "battery": {
        "battery_kwh": ("kWh", 0.0, math.inf, False),
        "charge_kw": ("kW", 0.0, math.inf, True),
        "discharge_kw": ("kW", 0.0, math.inf, True),
        "charge_eff": ("1", 0.0, 1.0, False),
        "discharge_eff": ("1", 0.0, 1.0, False),
        "soc_min": ("1", 0.0, 1.0, True),
        "soc_max": ("1", 0.0, 1.0, True),
    },
    "ev_charger": {
        "ev_max_kw": ("kW", 0.0, math.inf, False),
        "ev_connectors": ("1", 1.0, 64.0, True),
    },
    "load": {
        "load_peak_kw": ("kW", 0.0, math.inf, True),
    },
}
DEVICE_FLOAT_FIELDS: tuple[str, ...] = tuple(
    name for fields in _NUMERIC_FIELDS.values() for name in fields if name != "ev_connectors"
)
SITE_FLOAT_FIELDS: tuple[str, ...] = ("lat_deg", "lon_deg", "import_limit_kw", "export_limit_kw")


class FleetError(ValueError):
    """Invalid fleet input. ``problems`` lists each as ``(record, field, message)``."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        shown = "; ".join(f"{rec} field '{fld}': {msg}" for rec, fld, msg in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"invalid fleet: {shown}{more}")


@dataclass(frozen=True, eq=False)
class Fleet:
    """Sites, feeders and devices of a fleet, as numpy columns.

    Site columns (length ``n_sites``): ``site_id``, ``site_name``, ``lat_deg``,
    ``lon_deg``, ``timezone``, ``import_limit_kw``, ``export_limit_kw``
    (grid connection limits [kW]), ``site_feeder`` (row into the feeder
    columns), ``site_status``.

    Feeder columns (length ``n_feeders``): ``feeder_id``,
    ``feeder_import_limit_kw``, ``feeder_export_limit_kw`` (transformer
    limits shared by the feeder's sites [kW]).

    Device columns (length ``n_devices``): ``device_id``, ``device_site``
    (row into the site columns), ``device_type`` (code, see ``DEVICE_TYPES``),
    one float column per field in ``DEVICE_FLOAT_FIELDS`` (NaN where the
    field does not apply to the type), ``ev_connectors`` (0 where n/a) and
    ``load_profile`` (code into ``LOAD_PROFILES``, -1 where n/a).
    """

    site_id: np.ndarray
    site_name: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    timezone: np.ndarray
    import_limit_kw: np.ndarray
    export_limit_kw: np.ndarray
    site_feeder: np.ndarray
    site_status: np.ndarray
    feeder_id: np.ndarray
    feeder_import_limit_kw: np.ndarray
    feeder_export_limit_kw: np.ndarray
    device_id: np.ndarray
    device_site: np.ndarray
    device_type: np.ndarray
    device_float: dict[str, np.ndarray]
    ev_connectors: np.ndarray
    load_profile: np.ndarray
    site_row: dict[str, int] = field(init=False)
    feeder_row: dict[str, int] = field(init=False)
    device_row: dict[str, int] = field(init=False)
    site_start: np.ndarray = field(init=False)
    site_stop: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        setter = object.__setattr__
        setter(self, "site_row", {s: i for i, s in enumerate(self.site_id.tolist())})
        setter(self, "feeder_row", {s: i for i, s in enumerate(self.feeder_id.tolist())})
        setter(self, "device_row", {s: i for i, s in enumerate(self.device_id.tolist())})
        counts = np.bincount(self.device_site, minlength=self.n_sites)
        stop = np.cumsum(counts)
        setter(self, "site_start", (stop - counts).astype(np.int64))
        setter(self, "site_stop", stop.astype(np.int64))

    # -- sizes ---------------------------------------------------------------
    @property
    def n_sites(self) -> int:
        return len(self.site_id)

    @property
    def n_feeders(self) -> int:
        return len(self.feeder_id)

    @property
    def n_devices(self) -> int:
        return len(self.device_id)

    def __getattr__(self, name: str) -> np.ndarray:
        # Per-type float columns read as attributes: fleet.pv_kwp, fleet.soc_min, ...
        floats = self.__dict__.get("device_float")
        if floats is not None and name in floats:
            return floats[name]
        raise AttributeError(name)

    def rows_of_type(self, type_name: str) -> np.ndarray:
        """Device rows of one type, in row order."""
        return np.flatnonzero(self.device_type == TYPE_CODE[type_name])

    def count_by_type(self) -> dict[str, int]:
        counts = np.bincount(self.device_type, minlength=len(DEVICE_TYPES))
        return {name: int(counts[code]) for code, name in enumerate(DEVICE_TYPES)}

    def installed_capacity_kw(self) -> float:
        """Installed capacity [kW]: PV peak power plus battery discharge power."""
        return float(np.nansum(self.pv_kwp) + np.nansum(self.discharge_kw))

    def summary(self) -> dict[str, Any]:
        return {
            "sites": self.n_sites,
            "feeders": self.n_feeders,
            "devices": self.n_devices,
            "devices_by_type": self.count_by_type(),
            "installed_capacity_mw": round(self.installed_capacity_kw() / 1000.0, 3),
            "pv_mwp": round(float(np.nansum(self.pv_kwp)) / 1000.0, 3),
            "battery_mwh": round(float(np.nansum(self.battery_kwh)) / 1000.0, 3),
            "ev_connectors": int(self.ev_connectors.sum()),
        }

    # -- records -------------------------------------------------------------
    @classmethod
    def from_records(
        cls,
        sites: Iterable[Mapping[str, Any]],
        devices: Iterable[Mapping[str, Any]],
        feeders: Iterable[Mapping[str, Any]] = (),
    ) -> Fleet:
        """Build and validate a fleet from plain records (dicts).

        Raises :class:`FleetError` naming every bad record and field.
        """
        sites, devices, feeders = list(sites), list(devices), list(feeders)
        problems: list[tuple[str, str, str]] = []
        feeder_ids = _check_ids(feeders, "feeder", problems)
        site_ids = _check_ids(sites, "site", problems)
        _check_ids(devices, "device", problems)
        for rec in feeders:
            name = f"feeder {rec.get('id')!r}"
            for fld in ("import_limit_kw", "export_limit_kw"):
                if rec.get(fld) is not None:  # None: no transformer limit
                    _check_number(rec, fld, name, 0.0, math.inf, True, problems)
        # Sites without an explicit feeder get their own one-site feeder.
        implicit_feeders = []
        for rec in sites:
            name = f"site {rec.get('id')!r}"
            _check_number(rec, "lat_deg", name, -90.0, 90.0, True, problems)
            _check_number(rec, "lon_deg", name, -180.0, 180.0, True, problems)
            _check_number(rec, "import_limit_kw", name, 0.0, math.inf, True, problems)
            _check_number(rec, "export_limit_kw", name, 0.0, math.inf, True, problems)
            status = rec.get("status", "active")
            if status not in SITE_STATUSES:
                problems.append((name, "status", f"{status!r} is not one of {SITE_STATUSES}"))
            tz = rec.get("timezone", "UTC")
            if not _valid_timezone(tz):
                problems.append((name, "timezone", f"{tz!r} is not a known IANA time zone"))
            feeder = rec.get("feeder_id")
            if feeder is None:
                implicit_feeders.append(rec.get("id"))
            elif feeder not in feeder_ids:
                problems.append((name, "feeder_id", f"unknown feeder {feeder!r}"))
        for rec in devices:
            name = f"device {rec.get('id')!r}"
            site = rec.get("site_id")
            if site not in site_ids:
                problems.append((name, "site_id", f"unknown site {site!r}"))
            dtype = rec.get("type")
            if dtype not in TYPE_CODE:
                problems.append((name, "type", f"{dtype!r} is not one of {DEVICE_TYPES}"))
                continue
            for fld, (_unit, lo, hi, lo_incl) in _NUMERIC_FIELDS[dtype].items():
                _check_number(rec, fld, name, lo, hi, lo_incl, problems)
            if dtype == "battery":
                lo, hi = rec.get("soc_min"), rec.get("soc_max")
                if _is_number(lo) and _is_number(hi) and lo > hi:
                    problems.append((name, "soc_min", f"{lo} is above soc_max {hi}"))
            if dtype == "ev_charger" and _is_number(rec.get("ev_connectors")):
                if float(rec["ev_connectors"]) != int(rec["ev_connectors"]):
                    problems.append((name, "ev_connectors", "must be a whole number"))
            if dtype == "load":
                profile = rec.get("load_profile", "commercial")
                if profile not in PROFILE_CODE:
                    problems.append(
                        (name, "load_profile", f"{profile!r} is not one of {LOAD_PROFILES}")
                    )
        if problems:
            raise FleetError(problems)

        feeder_recs = [dict(r) for r in feeders] + [
            {"id": f"{sid}", "import_limit_kw": math.inf, "export_limit_kw": math.inf}
            for sid in implicit_feeders
        ]
        if len({r["id"] for r in feeder_recs}) != len(feeder_recs):
            clash = sorted({str(s) for s in implicit_feeders} & feeder_ids)
            raise FleetError([(f"site {c!r}", "feeder_id", "missing, and its implicit "
                               "one-site feeder id clashes with a declared feeder")
                              for c in clash])
        feeder_row = {r["id"]: i for i, r in enumerate(feeder_recs)}
        site_row = {r["id"]: i for i, r in enumerate(sites)}

        dev_site = np.array([site_row[d["site_id"]] for d in devices], dtype=np.int32)
        dev_type = np.array([TYPE_CODE[d["type"]] for d in devices], dtype=np.int8)
        order = np.lexsort((np.arange(len(devices)), dev_type, dev_site)) if devices else []
        ordered = [devices[i] for i in order]

        floats = {
            fld: np.array([_float_or_nan(d.get(fld)) if fld in _NUMERIC_FIELDS[d["type"]]
                           else np.nan for d in ordered], dtype=np.float64)
            for fld in DEVICE_FLOAT_FIELDS
        }
        return cls(
            site_id=np.array([str(s["id"]) for s in sites], dtype=object),
            site_name=np.array([str(s.get("name", s["id"])) for s in sites], dtype=object),
            lat_deg=np.array([float(s["lat_deg"]) for s in sites]),
            lon_deg=np.array([float(s["lon_deg"]) for s in sites]),
            timezone=np.array([str(s.get("timezone", "UTC")) for s in sites], dtype=object),
            import_limit_kw=np.array([float(s["import_limit_kw"]) for s in sites]),
            export_limit_kw=np.array([float(s["export_limit_kw"]) for s in sites]),
            site_feeder=np.array(
                [feeder_row[s.get("feeder_id", s["id"])] for s in sites], dtype=np.int32
            ),
            site_status=np.array([str(s.get("status", "active")) for s in sites], dtype=object),
            feeder_id=np.array([str(f["id"]) for f in feeder_recs], dtype=object),
            feeder_import_limit_kw=np.array([_float_or_inf(f.get("import_limit_kw"))
                                             for f in feeder_recs]),
            feeder_export_limit_kw=np.array([_float_or_inf(f.get("export_limit_kw"))
                                             for f in feeder_recs]),
            device_id=np.array([str(d["id"]) for d in ordered], dtype=object),
            device_site=dev_site[order].astype(np.int32) if len(ordered) else dev_site,
            device_type=dev_type[order].astype(np.int8) if len(ordered) else dev_type,
            device_float=floats,
            ev_connectors=np.array(
                [int(d["ev_connectors"]) if d["type"] == "ev_charger" else 0 for d in ordered],
                dtype=np.int16,
            ),
            load_profile=np.array(
                [PROFILE_CODE[d.get("load_profile", "commercial")] if d["type"] == "load" else -1
                 for d in ordered],
                dtype=np.int8,
            ),
        )

    def site_records(self) -> list[dict[str, Any]]:
        feeder = self.feeder_id[self.site_feeder]
        return [
            {
                "id": self.site_id[i],
                "name": self.site_name[i],
                "lat_deg": float(self.lat_deg[i]),
                "lon_deg": float(self.lon_deg[i]),
                "timezone": self.timezone[i],
                "import_limit_kw": float(self.import_limit_kw[i]),
                "export_limit_kw": float(self.export_limit_kw[i]),
                "feeder_id": feeder[i],
                "status": self.site_status[i],
            }
            for i in range(self.n_sites)
        ]

    def feeder_records(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self.feeder_id[i],
                "import_limit_kw": _json_float(self.feeder_import_limit_kw[i]),
                "export_limit_kw": _json_float(self.feeder_export_limit_kw[i]),
            }
            for i in range(self.n_feeders)
        ]

    def device_records(self) -> list[dict[str, Any]]:
        out = []
        for i in range(self.n_devices):
            dtype = DEVICE_TYPES[self.device_type[i]]
            rec: dict[str, Any] = {
                "id": self.device_id[i],
                "site_id": self.site_id[self.device_site[i]],
                "type": dtype,
            }
            for fld in _NUMERIC_FIELDS[dtype]:
                if fld == "ev_connectors":
                    rec[fld] = int(self.ev_connectors[i])
                else:
                    rec[fld] = float(self.device_float[fld][i])
            if dtype == "load":
                rec["load_profile"] = LOAD_PROFILES[self.load_profile[i]]
            out.append(rec)
        return out

    def to_records(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "feeders": self.feeder_records(),
            "sites": self.site_records(),
            "devices": self.device_records(),
        }

    def subset(self, keep_site_ids: Iterable[str]) -> Fleet:
        """A new fleet with only the given sites (and their devices and feeders)."""
        keep = set(keep_site_ids)
        recs = self.to_records()
        sites = [s for s in recs["sites"] if s["id"] in keep]
        used = {s["feeder_id"] for s in sites}
        return Fleet.from_records(
            sites,
            [d for d in recs["devices"] if d["site_id"] in keep],
            [f for f in recs["feeders"] if f["id"] in used],
        )


# -- files ---------------------------------------------------------------------
def save_fleet(fleet: Fleet, path: str | Path) -> None:
    """Write a fleet to ``.json`` (records) or ``.parquet`` (a directory of three tables)."""
    path = Path(path)
    recs = fleet.to_records()
    if path.suffix == ".json":
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(_jsonable(recs), indent=1))
        tmp.replace(path)
    elif path.suffix == ".parquet":
        path.mkdir(parents=True, exist_ok=True)
        for kind, rows in recs.items():
            pd.DataFrame(rows).to_parquet(path / f"{kind}.parquet", index=False)
    else:
        raise ValueError(f"fleet file {path}: unknown format (use .json or .parquet)")


def read_fleet(path: str | Path) -> Fleet:
    """Read a fleet written by :func:`save_fleet`; refuses bad content with FleetError."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            recs = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise FleetError([(str(path), "-", f"not valid JSON: {exc}")]) from exc
        return parse_fleet(recs, source=str(path))
    if path.suffix == ".parquet":
        recs = {}
        for kind in ("feeders", "sites", "devices"):
            frame = pd.read_parquet(path / f"{kind}.parquet")
            recs[kind] = [
                {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
                for row in frame.to_dict(orient="records")
            ]
        return parse_fleet(recs, source=str(path))
    raise ValueError(f"fleet file {path}: unknown format (use .json or .parquet)")


def parse_fleet(data: Any, source: str = "fleet") -> Fleet:
    """Build a fleet from the ``{"feeders": [...], "sites": [...], "devices": [...]}`` shape."""
    if not isinstance(data, dict) or not isinstance(data.get("sites"), list) or not isinstance(
        data.get("devices"), list
    ):
        raise FleetError([(source, "sites, devices", "expected an object with lists 'sites' "
                           "and 'devices' (and optionally 'feeders')")])
    return Fleet.from_records(data["sites"], data["devices"], data.get("feeders", []))


# -- helpers -------------------------------------------------------------------
def _check_ids(records: list[Any], kind: str, problems: list[tuple[str, str, str]]) -> set[str]:
    seen: set[str] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            problems.append((f"{kind} #{i}", "-", "not an object"))
            continue
        rid = rec.get("id")
        if not isinstance(rid, str) or not rid or "/" in rid or "+" in rid or "#" in rid:
            problems.append((f"{kind} #{i}", "id", f"{rid!r} must be a non-empty string "
                             "without '/', '+' or '#'"))
        elif rid in seen:
            problems.append((f"{kind} {rid!r}", "id", "duplicate id"))
        else:
            seen.add(rid)
    return seen


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool
    )


def _check_number(
    rec: Mapping[str, Any],
    fld: str,
    name: str,
    lo: float,
    hi: float,
    lo_inclusive: bool,
    problems: list[tuple[str, str, str]],
) -> None:
    value = rec.get(fld)
    if value is None:
        problems.append((name, fld, "missing"))
    elif not _is_number(value) or math.isnan(float(value)):
        problems.append((name, fld, f"{value!r} is not a number"))
    elif value < lo or (value == lo and not lo_inclusive) or value > hi:
        bracket = "[" if lo_inclusive else "("
        problems.append((name, fld, f"{value} is outside {bracket}{lo}, {hi}]"))


def _valid_timezone(tz: Any) -> bool:
    if not isinstance(tz, str):
        return False
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _float_or_nan(value: Any) -> float:
    return float(value) if value is not None else math.nan


def _float_or_inf(value: Any) -> float:
    return float(value) if value is not None else math.inf


def _json_float(value: float) -> float | None:
    return None if math.isinf(value) else float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return None
    return value
