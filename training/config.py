"""Training configuration: `default_config.yaml` holds every default; a user file overrides keys."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")


def _merge(base: dict, override: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise ValueError(f"unknown configuration key {where!r} (see {DEFAULT_CONFIG_PATH.name})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"configuration key {where!r} must be a mapping")
            out[key] = _merge(base[key], value, where + ".")
        else:
            out[key] = value
    return out


def load_yaml_with_defaults(defaults: Path, path: str | Path | None = None,
                            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults file, updated by the YAML file at `path` and then by `overrides` (same shape);
    an unknown key is an error that names it."""
    cfg = yaml.safe_load(Path(defaults).read_text())
    if path is not None:
        cfg = _merge(cfg, yaml.safe_load(Path(path).read_text()) or {})
    if overrides:
        cfg = _merge(cfg, overrides)
    return cfg


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training defaults, updated by the YAML file at `path` and then by `overrides`."""
    return load_yaml_with_defaults(DEFAULT_CONFIG_PATH, path, overrides)
