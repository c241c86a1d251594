"""The operation registry: every studio operation is one params dataclass and one function.

An operation is ``fn(params, hooks, ws) -> dict`` registered with
``@operation``. The job runner runs it in the background, the ``voicelab``
command line runs it in the foreground (its options are generated from the
params dataclass, see ``engines.core.params``), and the studio's tabs and
HTTP API submit it as a job, so every surface runs the same code with the
same defaults.

Which modules define operations is not written here: each area lists its
modules in the ``voicelab.operations`` entry-point group (``pyproject.toml``),
so this ground-floor module names nothing above it. ``load_operations``
imports them; importing them must not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping, Sequence

from engines.core.hooks import Hooks
from engines.core.lanes import LANES
from engines.core.settings import Workspace

ENTRY_POINT_GROUP = "voicelab.operations"

# A job's lane (see engines.core.lanes: "training", "listening", "cpu"), or "inline": quick queries
# and edits that answer at once in the caller (never queued as jobs).
KINDS = (*LANES, "inline")


@dataclass(frozen=True)
class Command:
    """How an operation appears on the command line: ``voicelab <path...>``.

    ``preset`` fixes some parameters for this spelling (e.g. ``dataset create`` is the import
    operation with ``must="new"``); ``positional`` fields are arguments instead of options;
    ``skip`` hides options this spelling does not use; ``json_key`` names the part of the
    result that ``--json`` prints (default: all of it); ``read_only`` commands leave the
    disk as they found it (no workspace folders made).
    """

    path: str
    help: str = ""
    positional: tuple[str, ...] = ()
    preset: Mapping[str, Any] = field(default_factory=dict)
    skip: tuple[str, ...] = ()
    json_key: str = ""
    read_only: bool = False  # only looks: the CLI opens the workspace without creating its folders


@dataclass(frozen=True)
class Operation:
    name: str
    fn: Callable[[Any, Hooks, Workspace], dict]
    params: type
    kind: str
    title: str
    commands: tuple[Command, ...] = ()
    # Terminal text for a result (default: its "summary"); the CLI prints JSON with --json instead.
    render: Callable[[dict], str] | None = None

    @property
    def module(self) -> str:
        """Where the operation is defined (a worker process imports it from there)."""
        return self.fn.__module__


OPERATIONS: dict[str, Operation] = {}


def operation(
    name: str,
    *,
    params: type,
    kind: str = "training",
    title: str = "",
    cli: str | Command | Sequence[Command] | None = None,
    render: Callable[[dict], str] | None = None,
) -> Callable:
    """Register ``fn(params, hooks, ws) -> dict`` as the operation ``name``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (got {kind!r})")
    if cli is None:
        commands: tuple[Command, ...] = ()
    elif isinstance(cli, str):
        commands = (Command(cli),)
    elif isinstance(cli, Command):
        commands = (cli,)
    else:
        commands = tuple(cli)

    def wrap(fn: Callable) -> Callable:
        OPERATIONS[name] = Operation(name, fn, params, kind, title or name, commands, render)
        return fn

    return wrap


def is_absent_module(module: str, exc: ModuleNotFoundError) -> bool:
    """True when ``exc`` says ``module`` (or a parent package) does not exist."""
    return bool(exc.name) and (module == exc.name or module.startswith(exc.name + "."))


def operation_modules() -> list[str]:
    """The modules that define operations, from the installed entry points."""
    return sorted({ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_operations() -> dict[str, Operation]:
    """Import every operation module once; returns the registry."""
    for mod in operation_modules():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if not is_absent_module(mod, exc):  # a real missing dependency inside the module
                raise
    return OPERATIONS


def get_operation(name: str) -> Operation:
    from engines.core.errors import InvalidInputError

    ops = load_operations()
    if name not in ops:
        raise InvalidInputError(f"Unknown operation '{name}'.", f"Known: {', '.join(sorted(ops))}")
    return ops[name]


def request_params(ws: Workspace, name: str, values: dict | Any) -> Any:
    """The params of a request from the page or the HTTP API: validated, every declared path confined.

    The studio submits jobs and runs quick operations with these (the command line does not:
    it is the local user's own shell).
    """
    import dataclasses

    from engines.core.params import build
    from engines.core.paths import confine_params

    op = get_operation(name)
    obj = values if dataclasses.is_dataclass(values) else build(op.params, dict(values or {}))
    return confine_params(ws, obj)


def run_inline(name: str, params: dict | Any, ws: Workspace, hooks: Hooks | None = None) -> dict:
    """Run an operation in the caller (CLI foreground, quick API queries) and return its result."""
    import dataclasses

    from engines.core.params import build

    op = get_operation(name)
    obj = params if dataclasses.is_dataclass(params) else build(op.params, dict(params or {}))
    return op.fn(obj, hooks or Hooks(), ws) or {}
