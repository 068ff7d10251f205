"""The one mechanism for typed, validated settings: pydantic models, loadable from TOML.

Unknown keys, wrong types and values out of bounds are one error, ``ConfigError``, whose message
names the key as a dotted path (``phasing.population``) and the file, so a typo in a config file
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

S = TypeVar("S", bound="Settings")


class ConfigError(ValueError):
    """A configuration value that is missing, unknown, of the wrong type or out of bounds."""


class Settings(BaseModel):
    """Base of every settings model: unknown keys refused, frozen, strict types (an int may stand for a float),
    numbers finite.

    Keyword construction raises ``ConfigError`` (never pydantic's ``ValidationError``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc) from None

    # validates as BaseModel.__init__ does (as RootModel's does): nested tables keep their dotted keys
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes``, validated again (``model_copy(update=...)`` would skip the checks)."""
        return type(self)(**{**dict(self), **changes})


def config_error(exc: ValidationError, source: str = "") -> ConfigError:
    """One ConfigError for pydantic's errors, each naming its key as a dotted path; ``source`` names the file."""
    problems = "; ".join(_describe(e) for e in exc.errors(include_url=False))
    return ConfigError(f"{source}: {problems}" if source else problems)


def _describe(error: dict) -> str:
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return f"unknown key {key}"
    if kind == "missing":
        return f"missing {'item' if isinstance(error['loc'][-1], int) else 'key'} {key}"
    if kind in ("value_error", "assertion_error"):
        text = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return f"{key}: {text}" if key else text
    if kind in ("model_type", "model_attributes_type", "dict_type", "dataclass_type"):
        msg = "Input should be a table"
    _, should, rest = msg.partition(" should ")  # "Input should be ..." -> "must be ..."
    got = repr(error["input"])
    return f"{key or 'config'} {'must ' + rest if should else msg}, got {got[:80]}"


def from_mapping(cls: type[S], data: Any, source: str = "") -> S:
    """``cls`` from a nested mapping (parsed TOML); ConfigError naming the key (and ``source``) otherwise."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'config'} must be a table, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source) from None


def read_toml(path: Path | str) -> dict:
    """The parsed TOML file; ConfigError if it is missing or not TOML."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(path: Path | str | None, cls: type[S], overrides: dict | None = None) -> S:
    """Read a TOML file (or nothing) into ``cls``; ``overrides`` win over the file.

    Override keys may be dotted (``"web.port"``) to reach into a table; None values are skipped.
    """
    data = read_toml(path) if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        *tables, leaf = key.split(".")
        table = data
        for name in tables:
            table = table.setdefault(name, {})
            if not isinstance(table, dict):  # e.g. an old flat key in the file: validation names it
                break
        else:
            table[leaf] = value
    return from_mapping(cls, data, "" if path is None else str(path))


load_config = load_settings  # the name the callers have always used


def dataclass_model(cls: type, *, required: bool = False) -> type[Settings]:
    """A Settings model of a stdlib dataclass' init fields (their defaults too, unless ``required``).

    For settings dataclasses not written as models: unknown keys and wrong types are refused by
    name; a TOML list may stand for a tuple (its items keep their strict types).
    """
    hints = typing.get_type_hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        hint = hints[f.name]
        tuples = tuple in {typing.get_origin(h) for h in (hint, *typing.get_args(hint))}
        lax = {"strict": False} if tuples else {}  # a TOML list may stand for a tuple
        if required:
            default = Field(**lax)
        elif f.default is not dataclasses.MISSING:
            default = Field(f.default, **lax)
        else:
            default = Field(default_factory=f.default_factory, **lax)
        fields[f.name] = (hint, default)
    return create_model(f"{cls.__name__}Table", __base__=Settings, **fields)


def dataclass_from_dict(cls: type, table: type[Settings], data: dict, what: str):
    """A settings dataclass from its ``to_dict``: keys and types checked by ``table`` (a ``dataclass_model``),
    then the dataclass' own checks; ConfigError naming ``what`` and the key otherwise."""
    checked = from_mapping(table, {k: v for k, v in data.items() if k != "kind"}, what)
    try:
        return cls(**dict(checked))
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None
