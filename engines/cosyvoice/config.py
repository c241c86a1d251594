"""The SFT training config, derived from a model dir's own yaml.

Upstream yaml files are HyperPyYAML: ``!new:``/``!name:``/``!ref`` tags that
build objects when loaded. We never load them that way here; we edit the
few values SFT needs at text level (every other line, tag and comment stays
byte-identical) and read values back with a loader that keeps tags as
plain data. The same loader reads upstream's checkpoint ``.yaml`` files,
whose ``grad_norm`` is a pickled tensor (``!!python/object/apply``) that
must never be executed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from engines.core.atomic import write_text
from engines.core.errors import InvalidInputError

# What "speaker fine-tuning" means in upstream's recipe comments: speaker
# embeddings on, constant lr 1e-5.
SFT_DEFAULTS: dict[str, Any] = {
    "lr": 1e-5,
    "max_epoch": 10,
    "save_per_step": -1,
    "accum_grad": 2,
    "grad_clip": 5.0,
    "log_interval": 10,
    "max_frames_in_batch": 2000,
}

MARK = "# set by VoiceLab (SFT)"
_KEY_RE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.\-]*)\s*:(?P<rest>.*)$")


def _is_content(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block_end(lines: list[str], idx: int) -> int:
    """Index after the last line belonging to the key at ``idx`` (its nested lines)."""
    base = _indent(lines[idx])
    end = idx + 1
    last = idx + 1
    while end < len(lines):
        if _is_content(lines[end]):
            if _indent(lines[end]) <= base:
                break
            last = end + 1
        end += 1
    return last


def _find_child(lines: list[str], start: int, end: int, key: str) -> int | None:
    """Line index of ``key`` among the direct children in lines[start:end]."""
    child_indent = None
    for i in range(start, end):
        if not _is_content(lines[i]):
            continue
        ind = _indent(lines[i])
        if child_indent is None:
            child_indent = ind
        if ind != child_indent:
            continue
        m = _KEY_RE.match(lines[i])
        if m and m.group("key") == key:
            return i
    return None


def _format_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        # "1.0e-05", not "1e-05": a float for YAML 1.1 readers (PyYAML) as well as 1.2 (ruamel).
        text = repr(value)
        if "e" in text:
            mantissa, exp = text.split("e")
            if "." not in mantissa:
                mantissa += ".0"
            if exp[0] not in "+-":
                exp = "+" + exp
            return f"{mantissa}e{exp}"
        return text if "." in text else text + ".0"
    return str(value)


def set_yaml_value(text: str, path: tuple[str, ...], value: Any) -> str:
    """Set ``a: b: c: value`` in yaml text, editing or inserting only that line.

    Missing keys are inserted under their parent (missing top-level blocks are
    appended); the tag of an existing key's parent is left as it is.
    """
    lines = text.splitlines()
    start, end, parent_indent = 0, len(lines), -1
    parent_line: int | None = None
    for depth, key in enumerate(path):
        idx = _find_child(lines, start, end, key)
        last = depth == len(path) - 1
        if idx is None:
            # insert the rest of the path under the current parent
            child_indent = _first_child_indent(lines, start, end, parent_indent)
            new_lines = []
            for d, k in enumerate(path[depth:]):
                pad = " " * (child_indent + 4 * d)
                if depth + d == len(path) - 1:
                    new_lines.append(f"{pad}{k}: {_format_scalar(value)}  {MARK}")
                else:
                    new_lines.append(f"{pad}{k}:")
            insert_at = end if parent_line is not None else len(lines)
            if parent_line is None and lines and lines[-1].strip():
                new_lines.insert(0, "")
            lines[insert_at:insert_at] = new_lines
            return "\n".join(lines) + "\n"
        if last:
            m = _KEY_RE.match(lines[idx])
            assert m is not None
            lines[idx] = f"{m.group('indent')}{key}: {_format_scalar(value)}  {MARK}"
            return "\n".join(lines) + "\n"
        parent_line = idx
        parent_indent = _indent(lines[idx])
        start, end = idx + 1, _block_end(lines, idx)
    return "\n".join(lines) + "\n"


def _first_child_indent(lines: list[str], start: int, end: int, parent_indent: int) -> int:
    for i in range(start, end):
        if _is_content(lines[i]):
            return _indent(lines[i])
    return 0 if parent_indent < 0 else parent_indent + 4


# -- reading yaml without executing anything ---------------------------------------------

def _tolerant_loader() -> type:
    import yaml

    class TolerantLoader(yaml.SafeLoader):
        """SafeLoader that turns any tag (hyperpyyaml ``!new:``, ``!!python/...``) into plain data."""

    def plain(loader: Any, tag_suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    TolerantLoader.add_multi_constructor("!", plain)
    TolerantLoader.add_multi_constructor("tag:yaml.org,2002:python/", plain)
    return TolerantLoader


def load_yaml_tolerant(text: str) -> Any:
    """Parse yaml as data: tags are kept out, nothing is imported or executed."""
    import yaml

    return yaml.load(text, Loader=_tolerant_loader())  # noqa: S506 - loader constructs plain data only


def load_yaml_file(path: str | os.PathLike) -> Any:
    return load_yaml_tolerant(Path(path).read_text(encoding="utf-8"))


def as_float(value: Any) -> float | None:
    """A yaml scalar as float (YAML 1.1 reads ``1e-5`` as a string)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# -- the SFT config ------------------------------------------------------------------------

def sft_values(params: Any = None) -> dict[str, Any]:
    """SFT settings from a params object or mapping, falling back to SFT_DEFAULTS."""
    values = dict(SFT_DEFAULTS)
    for key in SFT_DEFAULTS:
        if isinstance(params, Mapping) and key in params:
            values[key] = params[key]
        elif params is not None and not isinstance(params, Mapping) and hasattr(params, key):
            values[key] = getattr(params, key)
    return values


def sft_config_text(base_text: str, params: Any = None) -> str:
    """``base_text`` (a model yaml) with the SFT edits applied."""
    v = sft_values(params)
    if int(v["max_epoch"]) < 1:
        raise InvalidInputError("max_epoch must be at least 1.")
    text = base_text
    edits: list[tuple[tuple[str, ...], Any]] = [
        (("padding", "use_spk_embedding"), True),
        (("batch", "max_frames_in_batch"), int(v["max_frames_in_batch"])),
        (("train_conf", "optim_conf", "lr"), float(v["lr"])),
        (("train_conf", "scheduler"), "constantlr"),
        (("train_conf", "max_epoch"), int(v["max_epoch"])),
        (("train_conf", "grad_clip"), float(v["grad_clip"])),
        (("train_conf", "accum_grad"), int(v["accum_grad"])),
        (("train_conf", "log_interval"), int(v["log_interval"])),
        (("train_conf", "save_per_step"), int(v["save_per_step"])),
    ]
    if _find_child(text.splitlines(), 0, len(text.splitlines()), "padding") is None:
        raise InvalidInputError("The model yaml has no 'padding' processor, so speaker embeddings cannot be enabled.",
                                "Use the cosyvoice*.yaml that came with the model.")
    for path, value in edits:
        text = set_yaml_value(text, path, value)
    return text


def write_sft_config(model_dir: str | os.PathLike, out_path: str | os.PathLike, params: Any = None) -> Path:
    """Write the SFT config derived from ``model_dir``'s yaml to ``out_path`` (atomically)."""
    from engines.cosyvoice.upstream import model_yaml

    base = model_yaml(model_dir)
    text = sft_config_text(base.read_text(encoding="utf-8"), params)
    return write_text(out_path, text)


def read_train_conf(config_path: str | os.PathLike) -> dict[str, Any]:
    """``train_conf`` of a (SFT) config, read without building anything."""
    data = load_yaml_file(config_path) or {}
    conf = data.get("train_conf") or {}
    return dict(conf)
