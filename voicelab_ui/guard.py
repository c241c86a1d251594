"""Every endpoint of the page answers bad input with a clear error, never a traceback.

Gradio exposes every event handler of the page as an HTTP endpoint (the
buttons' and also the change/load handlers), so any of them can be called
with any arguments. ``guard_endpoints`` wraps them all once the page is
built: a ``VoiceLabError`` becomes the message plus what to do; anything
else (a handler that did not expect ``None`` or a list) becomes one short
line naming the endpoint, and the traceback goes to the server log as the
bug it is. A new handler is guarded without anyone remembering to.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable

import gradio as gr

from engines.core.errors import VoiceLabError
from voicelab_ui.widgets import user_error

log = logging.getLogger("voicelab.endpoints")


def _translate(name: str, exc: BaseException) -> BaseException:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, VoiceLabError):
        return user_error(exc)
    log.error("endpoint /%s failed on its input", name, exc_info=exc)
    return gr.Error(f"/{name} cannot use these arguments ({type(exc).__name__}: {exc}). "
                    "Check the values against view_api(); the studio keeps running.", duration=None)


def guarded(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with its errors translated (sync, async and generator handlers alike)."""
    if getattr(fn, "_vl_guarded", False):
        return fn
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def agen(*args: Any, **kwargs: Any) -> Any:
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except Exception as exc:
                raise _translate(name, exc) from exc
        wrapper: Callable[..., Any] = agen
    elif inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _translate(name, exc) from exc
        wrapper = gen
    elif inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def coro(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise _translate(name, exc) from exc
        wrapper = coro
    else:
        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
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
