"""The one place where the RVC networks draw random numbers.

Upstream RVC draws noise in several places: the prior sample at inference
(``z_p = m_p + exp(logs_p) * randn * 0.66666``), the additive noise of the
NSF sine source, the posterior sample and the random training slices. Every
such draw in our networks goes through :func:`randn_like` / :func:`rand`
here, so tests and reproducible runs can switch all of them at once:

    with zero_noise():          # every draw returns zeros (how the golden data was made)
        audio = net.infer(...)[0]
    with seeded_noise(1234):    # every draw comes from one seeded generator
        ...

The mode is a context variable, so concurrent threads (the studio's job
runner and the UI) do not affect each other.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

# None = normal torch RNG; "zero" = zeros; a torch.Generator = draws from it.
_MODE: contextvars.ContextVar[Any] = contextvars.ContextVar("voicelab_rvc_noise", default=None)


@contextlib.contextmanager
def zero_noise() -> Iterator[None]:
    """Within the block every random draw of the RVC networks is zero."""
    token = _MODE.set("zero")
    try:
        yield
    finally:
        _MODE.reset(token)


@contextlib.contextmanager
def seeded_noise(seed: int) -> Iterator[None]:
    """Within the block random draws come from a CPU generator seeded with ``seed``.

    Draws are made on the CPU and moved to the target device, so results are
    the same on every device.
    """
    import torch

    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    token = _MODE.set(gen)
    try:
        yield
    finally:
        _MODE.reset(token)


def noise_is_zero() -> bool:
    """True inside :func:`zero_noise` (lets callers skip work that would add zeros)."""
    return _MODE.get() == "zero"


def randn_like(x: Any) -> Any:
    """Standard normal noise shaped like ``x`` (respecting the current mode)."""
    import torch

    mode = _MODE.get()
    if mode is None:
        return torch.randn_like(x)
    if mode == "zero":
        return torch.zeros_like(x)
    return torch.randn(x.shape, generator=mode, dtype=torch.float32).to(device=x.device, dtype=x.dtype)


def rand(shape: tuple[int, ...] | list[int], device: Any = None, dtype: Any = None) -> Any:
    """Uniform [0, 1) noise (respecting the current mode)."""
    import torch

    dtype = dtype or torch.float32
    mode = _MODE.get()
    if mode is None:
        return torch.rand(tuple(shape), device=device, dtype=dtype)
    if mode == "zero":
        return torch.zeros(tuple(shape), device=device, dtype=dtype)
    return torch.rand(tuple(shape), generator=mode, dtype=torch.float32).to(device=device, dtype=dtype)
