"""Every endpoint of the page answers bad input with a clear error, never a traceback.

Gradio exposes every event handler of the page as an HTTP endpoint (the
buttons' and also the change/load handlers), so any of them can be called
with any arguments. ``guard_endpoints`` wraps them all once the page is
built. Arguments are checked against the handler's type hints first (text
where text is due, numbers where numbers are; ``None`` for a ``str`` is "");
a ``VoiceLabError`` becomes the message plus what to do; anything else (a
handler that did not expect what it got) becomes one short line naming the
endpoint, and the traceback goes to the server log as the bug it is. A new
handler is guarded without anyone remembering to.
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
import typing
from typing import Any, Callable

import gradio as gr

from engines.core.errors import InvalidInputError, VoiceLabError
from voicelab_ui.widgets import user_error

log = logging.getLogger("voicelab.endpoints")
MAX_NUMBER = 2**53  # the largest integer a browser's JSON number holds exactly


def _translate(name: str, exc: BaseException) -> BaseException:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, VoiceLabError):
        return user_error(exc)
    log.error("endpoint /%s failed on its input", name, exc_info=exc)
    return gr.Error(f"/{name} cannot use these arguments ({type(exc).__name__}: {exc}). "
                    "Check the values against view_api(); the studio keeps running.", duration=None)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """``value`` as the hinted plain type (str, int, float, bool, list), or an InvalidInputError."""
    args = typing.get_args(hint)
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kinds = [a for a in args if a is not type(None)] if is_union else [hint]
    optional = is_union and type(None) in args
    plain = [typing.get_origin(k) or k for k in kinds]
    if not all(k in (str, int, float, bool, list) for k in plain):
        return value  # events, requests, components, Any: Gradio's business
    if value is None:
        if optional:
            return None
        if str in plain:
            return ""
        if list in plain:
            return []
        raise InvalidInputError(f"{name}: a value is required.")
    if isinstance(value, (dict, set)) or (isinstance(value, (list, tuple)) and list not in plain):
        raise InvalidInputError(f"{name}: expected {' or '.join(k.__name__ for k in plain)}, "
                                f"got {type(value).__name__}.")
    if str in plain:
        return value if isinstance(value, (str, list)) else str(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    for k in (bool, int, float):
        if k in plain:
            try:
                number = value if isinstance(value, k) else k(float(value)) if k is int else k(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise InvalidInputError(f"{name}: '{value}' is not a valid {k.__name__}.") from exc
            if k is not bool and not (abs(number) <= MAX_NUMBER):  # also NaN; no page number needs more
                raise InvalidInputError(f"{name}: {value} is out of range.")
            return number
    return value


def _argument_checker(fn: Callable[..., Any]) -> Callable[[tuple], tuple]:
    try:
        hints = typing.get_type_hints(fn)
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except Exception:  # unresolvable hints: nothing to check against
        return lambda args: args
    checks = [(i, p.name, hints[p.name]) for i, p in enumerate(params) if p.name in hints]

    def check(args: tuple) -> tuple:
        out = list(args)
        for i, pname, hint in checks:
            if i < len(out):
                out[i] = _coerce(pname, hint, out[i])
        return tuple(out)

    return check


def guarded(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with its arguments checked and its errors translated (sync, async and generator handlers alike)."""
    if getattr(fn, "_vl_guarded", False):
        return fn
    check = _argument_checker(fn)
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen(*args: Any, **kwargs: Any) -> Any:
            try:
                async for item in fn(*check(args), **kwargs):
                    yield item
            except Exception as exc:
                raise _translate(name, exc) from exc
        wrapper: Callable[..., Any] = agen
    elif inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*check(args), **kwargs)
            except Exception as exc:
                raise _translate(name, exc) from exc
        wrapper = gen
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def coro(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*check(args), **kwargs)
            except Exception as exc:
                raise _translate(name, exc) from exc
        wrapper = coro
    else:
        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*check(args), **kwargs)
            except Exception as exc:
                raise _translate(name, exc) from exc
        wrapper = plain
    wrapper._vl_guarded = True  # type: ignore[attr-defined]
    return wrapper


def guard_endpoints(demo: gr.Blocks) -> int:
    """Wrap every backend function of ``demo``; returns how many were wrapped."""
    n = 0
    for block_fn in demo.fns.values():
        if block_fn.fn is not None:
            block_fn.fn = guarded(block_fn.fn, str(block_fn.api_name or block_fn.name))
            n += 1
    return n
