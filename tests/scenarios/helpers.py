"""Small scenarios for the tests (a few sites, a day)."""

from __future__ import annotations

from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "scenarios" / "examples"


def tiny(**sections: object) -> str:
    """YAML of a 4-site, one-day scenario; keyword arguments replace top-level sections."""
    data: dict[str, object] = {
        "name": "tiny",
        "seed": 1,
        "fleet": {"generator": {"n_sites": 4, "seed": 0}},
        "period": {"start": "2025-06-02T00:00", "end": "2025-06-03T00:00", "step": "15min",
                   "timezone": "Europe/Berlin"},
        "strategy": {"kind": "rule"},
        "outputs": {"time_chunk_steps": 40},
    }
    data.update(sections)
    return yaml.safe_dump(data, sort_keys=False)


def write(tmp_path: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
