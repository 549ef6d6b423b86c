"""Dataclass configurations of every method (CENIQA, ARNIQA, TRCNN, SIND): one JSON/YAML round trip,
field-by-field overrides and one-line errors, as a mixin.

A config class subclasses ``MethodConfig`` and defines ``validate()``; values from files and from
``--set NAME=VALUE`` are converted to each field's type by ``coerce_value``.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

from synthiqa.atomic import atomic_write_text
from synthiqa.errors import ConfigError

C = TypeVar("C", bound="MethodConfig")


class MethodConfig:
    """Mixin for ``@dataclass`` configs: ``to_dict``, ``from_dict``, ``replace``, ``save``, ``load``."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """One-line ``ConfigError`` naming the first bad field (subclasses add their checks)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), ready for JSON and YAML."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
        """Build from a mapping; unknown keys and wrongly typed values give a one-line ``ConfigError``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of options, got {type(data).__name__}")
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = [key for key in data if key not in known]
        if unknown:
            owner = _owning_config(unknown, cls)
            if owner is not None:
                theirs, ours = _method_label(owner), _method_label(cls)
                raise ConfigError(
                    f"{source}: a {theirs} config (it sets {', '.join(map(repr, unknown[:3]))}), not "
                    f"{_article(ours)} {ours} one; train with --method {theirs.lower()} or start from "
                    f"{_article(ours)} {ours} config")
            close = difflib.get_close_matches(str(unknown[0]), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{source}: unknown option {unknown[0]!r}{hint}")
        hints = typing.get_type_hints(cls)
        values = {k: coerce_value(v, hints[k], k, source) for k, v in data.items()}
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_preset(cls: type[C], presets: dict[str, dict[str, Any]], name: str, label: str,
                    **overrides: Any) -> C:
        """The defaults with preset ``name`` from ``presets`` applied, then ``overrides``; ``label`` names the
        method in the one-line error for an unknown preset."""
        if name not in presets:
            raise ConfigError(f"unknown {label} preset {name!r}; known: {', '.join(presets)}")
        return cls().replace(**presets[name]).replace(**overrides)

    @classmethod
    def field_help(cls, name: str) -> str:
        """The first sentence of the docstring's entry for field ``name`` (a ``name: text`` line, or a
        line naming it among others: ``a / b: text``, ``lambda_*: text``), or "" where the docstring
        describes it only in prose."""
        lines = (cls.__doc__ or "").splitlines()
        for i, line in enumerate(lines):
            keys, sep, text = line.strip().partition(": ")
            if not sep or not any(k == name or (k.endswith("*") and name.startswith(k[:-1]))
                                  for k in re.findall(r"\w+\*?", keys)):
                continue
            indent = len(line) - len(line.lstrip())
            for more in lines[i + 1:]:
                if not more.strip() or len(more) - len(more.lstrip()) <= indent:
                    break
                text += " " + more.strip()
            first = text.replace("``", "").split(". ")[0].strip()
            return first if first.endswith(".") else first + "."
        return ""

    def replace(self: C, **overrides: Any) -> C:
        """A copy with some fields changed (``None`` values are ignored: the CLI's unset options)."""
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return type(self).from_dict(d, source="options")

    def save(self, path: str | Path) -> None:
        """Write as YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
        p = Path(path)
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            atomic_write_text(p, yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            atomic_write_text(p, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read a JSON or YAML file; a missing or unparsable file is a one-line ``ConfigError``."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        if _is_checkpoint(p):
            raise ConfigError(f"{p}: a synthiqa checkpoint, not a config file; give its run's config.yaml "
                              "(or the checkpoint to --resume, predict or evaluate)")
        try:
            text = p.read_text(encoding="utf-8")
            if p.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{p}: cannot parse ({first})") from None
        return cls.from_dict(data, source=str(p))


def _method_label(cls: type) -> str:
    """``CENIQAConfig`` -> ``CENIQA``: how messages name a config class's method."""
    return cls.__name__.removesuffix("Config")


def _article(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


def _config_classes(root: type = MethodConfig) -> list[type]:
    out = []
    for sub in root.__subclasses__():
        out += [sub, *_config_classes(sub)]
    return out


def _owning_config(keys: list[str], exclude: type) -> type | None:
    """The registered method config (other than ``exclude``) that knows every key, if one does."""
    for other in _config_classes():
        if other is not exclude and not issubclass(exclude, other) and not issubclass(other, exclude):
            if set(keys) <= {f.name for f in fields(other)}:
                return other
    return None


def _is_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a torch checkpoint (zip archive or legacy pickle), judged by its first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def read_yaml(path: Path, what: str) -> Any:
    """The parsed YAML document at ``path``; an unreadable or unparsable file is a one-line
    ``ConfigError`` naming the file and calling it ``what`` (e.g. "suite YAML")."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not a readable {what} ({first})") from None


def check_positive(config: Any, *names: str) -> None:
    """``ConfigError`` unless every named field is >= 1."""
    for name in names:
        if int(getattr(config, name)) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(config, name)}")


def check_choice(config: Any, name: str, choices: tuple[str, ...]) -> None:
    """``ConfigError`` unless the field's value is one of ``choices``."""
    if getattr(config, name) not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {getattr(config, name)!r}")


def coerce_value(value: Any, hint: Any, name: str, source: str) -> Any:
    """Convert a JSON/YAML/CLI value to the field's type, or raise a one-line ``ConfigError``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce_value(value, inner[0], name, source)
    try:
        if hint is bool:
            if isinstance(value, str):
                low = value.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return low in ("true", "1", "yes")
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, bool):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is str:
            if not isinstance(value, (str, int, float)):
                raise ValueError(value)
            return str(value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(coerce_value(v, args[0], name, source) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: option {name!r} has a bad value {value!r}") from None
    return value
