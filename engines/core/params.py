"""One parameter model per operation, shared by UI, CLI and API.

An operation's parameters are a dataclass whose fields are declared with
``param(...)``: default, help text, range or choices. The CLI builds its
argparse options from it, the UI builds its widgets from it, and
``validate`` checks values coming from any of them, so ranges and defaults
are defined exactly once.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, Sequence, TypeVar

from engines.core.errors import InvalidInputError

T = TypeVar("T")


@dataclass(frozen=True)
class ParamInfo:
    help: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    flag: str | None = None  # CLI spelling if not --field-name
    label: str | None = None  # UI label if not derived from the name
    cli: bool = True  # expose on the CLI


def param(
    default: Any = MISSING,
    *,
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    step: float | None = None,
    choices: Sequence[Any] | None = None,
    flag: str | None = None,
    label: str | None = None,
    cli: bool = True,
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field carrying its help, range and choices."""
    info = ParamInfo(help, min, max, step, tuple(choices) if choices is not None else None, flag, label, cli)
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={"param": info})
    return field(default=default, metadata={"param": info})


def info_of(f: dataclasses.Field) -> ParamInfo:
    return f.metadata.get("param", ParamInfo())


def _base_type(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    tp = hints.get(f.name, str)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        tp = args[0]
    return tp


def validate(obj: T) -> T:
    """Check every field against its range/choices; coerce numbers. Returns ``obj``."""
    for f in dataclasses.fields(obj):
        info = info_of(f)
        value = getattr(obj, f.name)
        tp = _base_type(type(obj), f)
        if value is None:
            continue
        try:
            if tp is int and not isinstance(value, bool):
                value = int(value)
            elif tp is float:
                value = float(value)
            elif tp is bool:
                value = value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes", "on"}
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{f.name}: '{value}' is not a valid {tp.__name__}.") from exc
        if info.min is not None and value < info.min or info.max is not None and value > info.max:
            raise InvalidInputError(f"{f.name} must be between {info.min} and {info.max} (got {value}).")
        if info.choices is not None and value not in info.choices:
            raise InvalidInputError(f"{f.name} must be one of {', '.join(map(str, info.choices))} (got {value!r}).")
        object.__setattr__(obj, f.name, value)
    return obj


def build(cls: type[T], values: dict[str, Any]) -> T:
    """Construct and validate ``cls`` from a dict, ignoring unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    return validate(cls(**{k: v for k, v in values.items() if k in names}))


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = ()) -> None:
    """Add one ``--option`` per field of ``cls`` (booleans get --x/--no-x)."""
    for f in dataclasses.fields(cls):
        info = info_of(f)
        if not info.cli or f.name in skip:
            continue
        flag = info.flag or "--" + f.name.replace("_", "-")
        tp = _base_type(cls, f)
        required = f.default is MISSING and f.default_factory is MISSING
        default = None if required else (f.default if f.default is not MISSING else f.default_factory())
        help_text = info.help
        if info.min is not None or info.max is not None:
            help_text += f" [{info.min}..{info.max}]"
        if not required:
            help_text += f" (default: {default})"
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif typing.get_origin(tp) in (list, tuple):
            parser.add_argument(flag, dest=f.name, nargs="+", default=default, required=required, help=help_text)
        else:
            conv = tp if tp in (int, float) else str
            parser.add_argument(flag, dest=f.name, type=conv, default=default, required=required,
                                choices=info.choices, help=help_text)


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    return build(cls, {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
