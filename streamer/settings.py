"""The one mechanism for typed, validated settings, loadable from TOML.

Unknown keys and wrong types are errors that name the offending key, so a typo in a config file
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value that is missing, unknown or of the wrong type."""


def from_mapping(cls, data: dict, path: str = ""):
    """Build dataclass ``cls`` from a nested mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) in {path or 'config'}: {', '.join(unknown)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{path}.{name}" if path else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_mapping(hint, value, key)
            continue
        base = {int: int, float: (int, float), str: str, bool: bool}.get(hint)
        if base is not None and (not isinstance(value, base) or (hint is not bool and isinstance(value, bool))):
            raise ConfigError(f"{key} must be {hint.__name__}, got {value!r}")
        kwargs[name] = float(value) if hint is float else value
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def load_config(path: Path | None, cls, overrides: dict | None = None):
    """Read a TOML file (or nothing) into ``cls``; ``overrides`` win over the file."""
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    return from_mapping(cls, data)
