"""The one place that turns a TOML config file into the typed, frozen stage configs.

A config file (see docs/config-example.toml; ``rtcal config`` prints the full
effective one)::

    fps_hz = 30.0          # top level: PipelineConfig's own fields, and mode
    radius_px = 6.0        #   ("2p" low-rank background, "1p" ring background)
    mode = "2p"
    init_frames = 300

    [motion]               # MotionConfig       (rtcal.motion.config)
    [nmf]                  # OnlineNMFConfig    (rtcal.nmf.online)
    [seed]                 # SeedConfig         (rtcal.detect.seed)
    [deconv]               # DeconvConfig       (rtcal.deconv.config)

    [engine]               # other tables (or arrays of tables, [[triggers]]),
    [[triggers]]           # passed through untouched to their owners
                           # (RunConfig.sections): PASSTHROUGH_SECTIONS

The stage configs are built as ``rtcal.engine.pipeline.pipeline_config(fps_hz,
radius_px, mode)`` builds them (one soma radius for every stage, the 1p
settings for mode "1p"), then each table's keys replace those values (so a
value written in [nmf] wins over the one mode "1p" would choose; the background
model itself is set by mode only). Flags given to :func:`load_config` (the
command line) replace the file's values.

Checked here, each error naming the file, the table and the key: a key the
table does not have (the valid ones are listed), a value of the wrong type
(TOML integers are accepted where a float is expected, nothing else is
converted), a table that is not known. Values that are the right type but
impossible are reported by the stage config's own validation, with the table.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from rtcal.errors import RtcalError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MODES = ("2p", "1p")
# Stage keys that the top-level mode sets (2p: low-rank background, 1p: ring).
SET_BY_MODE = {"nmf": ("background",)}
# Tables read by other parts of rtcal, handed over as parsed (dicts and lists).
PASSTHROUGH_SECTIONS = ("engine", "triggers", "detector")


class ConfigError(RtcalError):
    """A config file that cannot be used; the message names the file, table and key."""


@dataclass(frozen=True)
class RunConfig:
    """pipeline: the per-frame pipeline's settings; sections: the other tables
    (PASSTHROUGH_SECTIONS present in the file: a dict for a table, a list of
    dicts for an array of tables), as parsed, for their owners."""

    pipeline: typing.Any  # rtcal.engine.pipeline.PipelineConfig (imported lazily)
    sections: dict[str, dict | list] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return self.pipeline.mode


def load_config(
    path: str | Path | None,
    *,
    fps_hz: float | None = None,
    radius_px: float | None = None,
    mode: str | None = None,
    overrides: dict | None = None,
    fallback_fps_hz: float = 30.0,
) -> RunConfig:
    """Read ``path`` (None: no file, all defaults) into a RunConfig.

    fps_hz, radius_px, mode and overrides (other top-level keys, e.g.
    {"init_frames": 200}): command-line values; None or absent means "as the
    file says". fallback_fps_hz: the frame rate when neither gives one (e.g.
    the movie's metadata). Raises ConfigError.
    """
    where = str(path) if path is not None else "defaults"
    data = _read(Path(path)) if path is not None else {}
    flags = {"fps_hz": fps_hz, "radius_px": radius_px, "mode": mode, **(overrides or {})}
    sections = {k: v for k, v in data.items() if k in PASSTHROUGH_SECTIONS}
    top = {k: v for k, v in data.items() if not isinstance(v, dict) and k not in sections}
    top.update({k: v for k, v in flags.items() if v is not None})
    tables = {k: v for k, v in data.items() if isinstance(v, dict) and k not in sections}
    return RunConfig(_pipeline(where, top, tables, fallback_fps_hz), sections)


def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such config file") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e


def _pipeline(where: str, top: dict, tables: dict, fallback_fps_hz: float):
    from rtcal.engine.pipeline import PipelineConfig, pipeline_config

    stages = stage_sections()
    scalars = [f.name for f in dataclasses.fields(PipelineConfig) if f.name not in stages]
    _check_keys(where, "top level", top, [*scalars, "mode"], stages)
    for name in tables:
        if name not in stages:
            hint = " (its keys go at the top level)" if name == "pipeline" else ""
            raise ConfigError(
                f"{where}: unknown table [{name}]{hint}; tables are "
                + ", ".join(f"[{t}]" for t in (*stages, *PASSTHROUGH_SECTIONS))
            )
    hints = typing.get_type_hints(PipelineConfig)
    values = {k: _typed(where, "top level", k, v, hints[k]) for k, v in top.items() if k != "mode"}
    mode = top.get("mode", "2p")
    if mode not in MODES:
        raise ConfigError(f"{where}: top level: mode must be one of {MODES}, got {mode!r}")
    fps = values.pop("fps_hz", float(fallback_fps_hz))
    radius = values.pop("radius_px", PipelineConfig.radius_px)
    try:
        base = pipeline_config(fps, radius, mode)
        stage_values = {
            name: _stage(where, name, getattr(base, name), tables.get(name, {})) for name in stages
        }
        return dataclasses.replace(base, **values, **stage_values)
    except ConfigError:
        raise
    except RtcalError as e:
        raise ConfigError(f"{where}: {e}") from e


def stage_sections() -> dict[str, type]:
    """Table name -> stage config class: PipelineConfig's dataclass-typed fields."""
    from rtcal.engine.pipeline import PipelineConfig

    hints = typing.get_type_hints(PipelineConfig)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(PipelineConfig)
        if dataclasses.is_dataclass(hints[f.name])
    }


def _stage(where: str, name: str, base, table: dict):
    """``base`` (a stage config) with the table's keys replaced, validated by the stage."""
    cls = type(base)
    for key in SET_BY_MODE.get(name, ()):
        if key in table:
            raise ConfigError(f"{where}: [{name}]: {key} is set by the top-level mode (2p or 1p)")
    keys = [f.name for f in dataclasses.fields(cls) if f.name not in SET_BY_MODE.get(name, ())]
    _check_keys(where, f"[{name}]", table, keys, {})
    hints = typing.get_type_hints(cls)
    values = {k: _typed(where, f"[{name}]", k, v, hints[k]) for k, v in table.items()}
    try:
        return dataclasses.replace(base, **values)
    except RtcalError as e:
        raise ConfigError(f"{where}: [{name}]: {e}") from e


def _check_keys(where: str, table: str, given: dict, keys: list[str], subtables) -> None:
    for key, value in given.items():
        if key in keys:
            continue
        if key in subtables:  # e.g. "nmf = 3" at the top level
            raise ConfigError(f"{where}: {table}: {key!r} must be a table [{key}], got {value!r}")
        raise ConfigError(
            f"{where}: {table}: unknown key {key!r}; valid keys: {', '.join(sorted(keys))}"
        )


def _typed(where: str, table: str, key: str, value, annotation):
    """value checked against a field's annotation (float, int, bool, str, X | None)."""
    allowed = _members(annotation)
    if isinstance(value, bool):
        ok = bool in allowed
    elif isinstance(value, int):
        ok = int in allowed or float in allowed
    else:
        ok = type(value) in allowed
    if not ok:
        names = " or ".join(t.__name__ for t in allowed if t is not type(None))
        raise ConfigError(
            f"{where}: {table}: {key} must be {names}, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, int) and not isinstance(value, bool) and int not in allowed:
        return float(value)  # TOML 30 for a float field
    return value


def _members(annotation) -> tuple[type, ...]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


# ----------------------------------------------------------------- printing
def dump_config(config: RunConfig) -> str:
    """The full effective config as TOML text; :func:`load_config` reads it back
    to the same RunConfig. Unset optional values are written as comments."""
    p = config.pipeline
    stages = stage_sections()
    lines = [
        "# rtcal effective configuration (rtcal config / rtcal run --print-config)",
        f"mode = {_toml_value(config.mode)}",
    ]
    lines += _fields(p, skip=stages)
    for name in stages:
        lines += ["", f"[{name}]", *_fields(getattr(p, name), skip=SET_BY_MODE.get(name, ()))]
    for name, table in config.sections.items():
        if isinstance(table, dict):
            lines += _table([name], table)
            continue
        for item in table:  # an array of tables, [[name]]
            sub = _table([name], item)
            sub[1] = f"[[{_toml_key(name)}]]"
            lines += sub
    return "\n".join(lines) + "\n"


def _fields(obj, skip) -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        if value is None:
            out.append(f"# {f.name} = (unset: the stage's default rule)")
        else:
            out.append(f"{f.name} = {_toml_value(value)}")
    return out


def _table(path: list[str], table: dict) -> list[str]:
    """[a.b] with its scalar keys, then its sub-tables and arrays of tables."""
    name = ".".join(_toml_key(p) for p in path)
    plain = {k: v for k, v in table.items() if not _is_tables(v)}
    lines = ["", f"[{name}]", *(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in plain.items())]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += _table([*path, key], value)
        elif _is_tables(value):
            for item in value:
                sub = _table([*path, key], item)
                sub[1] = f"[[{name}.{_toml_key(key)}]]"
                lines += sub
    return lines


def _is_tables(value) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _toml_key(key: str) -> str:
    bare = key and all(ch.isalnum() or ch in "_-" for ch in key)
    return key if bare else _toml_value(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} as TOML")
