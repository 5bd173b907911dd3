"""``load_settings``: YAML file, ``CAPFC_*`` environment and CLI overrides merged into one ``Settings``."""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from capacity_forecaster.config.sections import ENV_PREFIX, Settings
from capacity_forecaster.errors import ConfigError, other_problems
from capacity_forecaster.yamlfile import read_yaml


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path, "config file", "--config")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, found {type(data).__name__}")
    return data


def _annotation_at(path: list[str]) -> Any:
    """The type of the Settings field at ``path`` (None when the path names no field)."""
    model: Any = Settings
    annotation: Any = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = model = field.annotation
    return annotation


def _is_text(annotation: Any) -> bool:
    """A field whose values are text (str, or a Literal of strings), possibly optional."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    options = tuple(o for o in options if o is not type(None))
    return bool(options) and all(
        o is str or (typing.get_origin(o) is Literal and all(isinstance(a, str) for a in typing.get_args(o)))
        for o in options)


def _env_value(raw: str, annotation: Any) -> Any:
    """An environment value for a field: text fields take the string as is (``no`` stays "no");
    anything else is read as YAML, so ``100`` is a number, ``[1, 7]`` a list and ``true`` a bool
    (which a count then rejects)."""
    if raw == "":
        return None
    if _is_text(annotation):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


# ``CAPFC_*`` variables that are not settings: the config file's own path (``--config``'s variable).
NOT_KEYS = frozenset({f"{ENV_PREFIX}CONFIG"})


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Turn ``CAPFC_SECTION__KEY=value`` variables into a nested mapping.

    Returns:
        (overrides, sources): the nested mapping, and dotted key -> "environment variable NAME" for
        every variable, so that a message names the variable that was really set.
    """
    out: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in NOT_KEYS:
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key == "lake":
            key = "lake__uri"
        path = key.split("__")
        source = f"environment variable {name}"
        _set_path(out, path, _env_value(raw, _annotation_at(path)), source=source)
        sources[".".join(path)] = source
    return out, sources


def _set_path(target: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    node = target
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _origin(key: str, sources: Mapping[str, str]) -> str:
    """Where ``key`` was set: the key itself, else the closest enclosing section that was set, else
    a deeper key below it (``CAPFC_GENERATE__SERVERS__X`` for a bad ``generate.servers``)."""
    if key in sources:
        return sources[key]
    deeper = sorted(k for k in sources if k.startswith(key + "."))
    if deeper:
        return sources[deeper[0]]
    parts = key.split(".")
    for end in range(len(parts) - 1, 0, -1):
        found = sources.get(".".join(parts[:end]))
        if found is not None:
            return found
    return "configuration"


def _describe(err: ValidationError, sources: Mapping[str, str]) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    value = first.get("input")
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        section = ".".join(str(p) for p in first["loc"][:-1])
        model: type[BaseModel] = Settings
        for part in first["loc"][:-1]:
            field = model.model_fields.get(str(part))
            annotation = getattr(field, "annotation", None)
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                break
            model = annotation
        allowed = ", ".join(model.model_fields)
        where = f"section '{section}'" if section else "the top level"
        msg = f"unknown key; allowed keys in {where}: {allowed}"
        value_txt = ""
    else:
        value_txt = f" = {value!r}"
    origin = _origin(key, sources)
    more = other_problems(err.errors(), first)
    return f"{origin}: key '{key}'{value_txt}: {msg}{more}"


def load_settings(
    config_file: Path | None = None,
    cli_overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults, the YAML file, ``CAPFC_*`` variables and CLI options into Settings.

    Args:
        config_file: YAML file to read; None reads nothing beyond the defaults.
        cli_overrides: dotted keys to values, e.g. ``{"generate.servers": 200}``;
            None values are ignored (the option was not given).
        environ: environment to read ``CAPFC_*`` variables from (default ``os.environ``).

    Returns:
        The validated, frozen Settings.

    Raises:
        ConfigError: naming the offending key, its value, where it came from and what is allowed.
    """
    sources: dict[str, str] = {}
    layers: list[dict[str, Any]] = []
    if config_file is not None:
        data = _read_yaml(Path(config_file))
        layers.append(data)
        for section, body in data.items():
            sources.setdefault(str(section), f"config file {config_file}")
            if isinstance(body, dict):
                for key in body:
                    sources[f"{section}.{key}"] = f"config file {config_file}"
    env, env_sources = _env_overrides(os.environ if environ is None else environ)
    layers.append(env)
    for key in env_sources:
        # An environment value replaces the file's value of the key and of anything below it.
        for stale in [k for k in sources if k == key or k.startswith(key + ".")]:
            del sources[stale]
    sources.update(env_sources)
    cli: dict[str, Any] = {}
    for dotted, value in (cli_overrides or {}).items():
        if value is None:
            continue
        _set_path(cli, dotted.split("."), value, source=f"option for {dotted}")
        sources[dotted] = "command line"
    layers.append(cli)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_describe(err, sources)) from err
