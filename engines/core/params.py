"""One parameter model per operation, shared by UI, CLI and API.

An operation's parameters are a dataclass whose fields are declared with
``param(...)``: default, help text, range or choices. A field typed
``Literal[...]`` takes its choices from the type. The CLI builds its
argparse options from it, the UI builds its widgets from it, and
``validate`` checks values coming from any of them, so ranges, choices and
defaults are defined exactly once.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, Sequence, TypeVar

from engines.core.errors import InvalidInputError
from engines.core.messages import msg

T = TypeVar("T")
# Values a device field may hold (they are handed to torch, onnxruntime or a subprocess as given).
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:[0-9]{1,2})?"


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
    # A server path the request names: its kind in the path policy (engines.core.paths), e.g. "read".
    path: str | None = None
    pattern: str | None = None  # a text value must match this regular expression (whole value)


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
    path: str | None = None,
    pattern: str | None = None,
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field carrying its help, range and choices (and, for server paths, their policy kind)."""
    info = ParamInfo(help, min, max, step, tuple(choices) if choices is not None else None, flag, label, cli, path,
                     pattern)
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata={"param": info})
    return field(default=default, metadata={"param": info})


def info_of(f: dataclasses.Field) -> ParamInfo:
    return f.metadata.get("param", ParamInfo())


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    tp = typing.get_type_hints(cls).get(f.name, str)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and args:
        tp = args[0]
    return tp


def value_type(cls: type, f: dataclasses.Field) -> Any:
    """The field's value type (a ``Literal`` counts as the type of its values)."""
    tp = _field_type(cls, f)
    if typing.get_origin(tp) is typing.Literal:
        return type(typing.get_args(tp)[0])
    return tp


def choices_of(cls: type, f: dataclasses.Field) -> tuple[Any, ...] | None:
    """The allowed values: from a ``Literal`` type, else from ``param(choices=...)``."""
    tp = _field_type(cls, f)
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    return info_of(f).choices


def validate(obj: T) -> T:
    """Check every field against its range/choices; coerce numbers. Returns ``obj``."""
    for f in dataclasses.fields(obj):
        info = info_of(f)
        value = getattr(obj, f.name)
        tp = value_type(type(obj), f)
        if value is None:
            continue
        value = _shape(f.name, tp, value)
        try:
            if tp is int and not isinstance(value, bool):
                value = int(value)
            elif tp is float:
                value = float(value)
            elif tp is bool:
                value = value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes", "on"}
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(msg("param.bad_type", name=f.name, value=str(value), type=tp.__name__)) from exc
        if info.min is not None and value < info.min or info.max is not None and value > info.max:
            raise InvalidInputError(msg("param.out_of_range", name=f.name, min=info.min, max=info.max, value=value))
        if info.pattern and isinstance(value, str) and not re.fullmatch(info.pattern, value):
            raise InvalidInputError(f"{f.name}: '{value[:80]}' is not accepted here.",
                                    f"Give a value of the form {info.pattern.replace('|', ' | ')}.")
        choices = choices_of(type(obj), f)
        if choices is not None and value not in choices:
            raise InvalidInputError(msg("param.not_a_choice", name=f.name, choices=", ".join(map(str, choices)),
                                        value=repr(value)))
        object.__setattr__(obj, f.name, value)
    return obj


def _shape(name: str, tp: Any, value: Any) -> Any:
    """Text fields hold text and list fields lists of scalars (API clients can send anything)."""
    import os

    is_list = typing.get_origin(tp) in (list, tuple)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if is_list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise InvalidInputError(f"{name}: expected a list, got {type(value).__name__}.")
        items = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        bad = [v for v in items if isinstance(v, (dict, list, tuple, set)) or v is None]
        if bad:
            raise InvalidInputError(f"{name}: every item must be a single value (got {type(bad[0]).__name__}).")
        return items
    if tp is str and isinstance(value, (dict, list, tuple, set, bytes)):
        raise InvalidInputError(f"{name}: expected text, got {type(value).__name__}.")
    if tp is str and not isinstance(value, str):
        value = str(value)
    if tp is str and "\0" in value:
        raise InvalidInputError(f"{name}: text must not contain NUL characters.")
    return value


def build(cls: type[T], values: dict[str, Any]) -> T:
    """Construct and validate ``cls`` from a dict, ignoring unknown keys."""
    fields = dataclasses.fields(cls)
    missing = [f.name for f in fields if f.name not in values
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise InvalidInputError(msg("param.missing", names=", ".join(missing)))
    names = {f.name for f in fields}
    return validate(cls(**{k: v for k, v in values.items() if k in names}))


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: Sequence[str] = (),
                  positional: Sequence[str] = ()) -> None:
    """Add one ``--option`` per field of ``cls`` (booleans get --x/--no-x).

    ``positional`` names fields given as arguments instead; a trailing ``+``, ``*`` or ``?``
    on a name sets how many values it takes (default: one, or zero or one when it has a default).
    """
    counts = {name.rstrip("+*?"): name[len(name.rstrip("+*?")):] for name in positional}
    for f in dataclasses.fields(cls):
        info = info_of(f)
        if f.name in skip or (not info.cli and f.name not in counts):
            continue
        tp = value_type(cls, f)
        required = f.default is MISSING and f.default_factory is MISSING
        default = None if required else (f.default if f.default is not MISSING else f.default_factory())
        choices = choices_of(cls, f)
        help_text = info.help
        if info.min is not None or info.max is not None:
            help_text += f" [{info.min}..{info.max}]"
        if not required and default not in (None, "", []):
            help_text += f" (default: {default})"
        is_list = typing.get_origin(tp) in (list, tuple)
        conv = tp if tp in (int, float) else str
        if f.name in counts:
            nargs = counts[f.name] or ("*" if is_list else None if required else "?")
            parser.add_argument(f.name, nargs=nargs, default=default, type=None if is_list else conv,
                                choices=choices, help=help_text)
            continue
        flag = info.flag or "--" + f.name.replace("_", "-")
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif is_list:
            parser.add_argument(flag, dest=f.name, nargs="+", default=default, required=required, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=conv, default=default, required=required,
                                choices=choices, help=help_text)


def from_namespace(cls: type[T], ns: argparse.Namespace) -> T:
    return build(cls, {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def subset(obj: Any, cls: type[T]) -> T:
    """An instance of ``cls`` holding the matching fields of ``obj`` (a job's params -> the engine's)."""
    return cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)})
