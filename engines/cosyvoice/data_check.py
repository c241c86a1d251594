"""Which prepared utterances upstream's data filter will drop, counted before training starts.

Upstream's ``processor.filter`` silently drops utterances whose audio or
text is outside the yaml's limits; when it drops all of them ``train.py``
ends in ``KeyError: 'tag'``. This runs in an upstream process (started by
``engines.cosyvoice.train`` with the upstream environment)::

    python -m engines.cosyvoice.data_check --config sft.yaml --qwen_pretrain_path DIR LIST [LIST...]

loads the config with upstream's hyperpyyaml (models left out), tokenises
every row's text with upstream's own tokenizer, applies the filter's
checks in upstream's order and prints one JSON line per list, prefixed
with ``MARK``: ``{"list", "total", "kept", "dropped": {reason: n},
"examples": {reason: [utt, ...]}, "limits": {...}}``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import Any

MARK = "[voicelab-data-check] "
CHECKED_FILTER_KEYS = ("max_length", "min_length", "token_max_length", "token_min_length",
                       "min_output_input_ratio", "max_output_input_ratio")


def drop_reason(num_frames: float, text_tokens: int, speech_tokens: int | None, limits: dict) -> str | None:
    """Why upstream's filter drops an utterance (None = kept); frames are 10 ms, as upstream counts."""
    if num_frames < limits["min_length"]:
        return f"audio shorter than {limits['min_length'] / 100:.2f} s (min_length {limits['min_length']})"
    if num_frames > limits["max_length"]:
        return f"audio longer than {limits['max_length'] / 100:.2f} s (max_length {limits['max_length']})"
    if text_tokens < limits["token_min_length"]:
        return f"fewer than {limits['token_min_length']} text token(s) (token_min_length)"
    if text_tokens > limits["token_max_length"]:
        return f"more than {limits['token_max_length']} text tokens (token_max_length)"
    if speech_tokens is not None and speech_tokens == 0:
        return "no speech tokens"
    if num_frames:
        ratio = text_tokens / num_frames
        if ratio < limits["min_output_input_ratio"]:
            return f"too little text for the audio (text tokens / 10 ms frames < {limits['min_output_input_ratio']})"
        if ratio > limits["max_output_input_ratio"]:
            return f"too much text for the audio (text tokens / 10 ms frames > {limits['max_output_input_ratio']})"
    return None


def filter_limits(configs: dict) -> dict | None:
    """The yaml's filter arguments with upstream's defaults filled in (None: the yaml has no filter)."""
    import inspect

    partial = configs.get("filter")
    if partial is None:
        return None
    defaults = {k: p.default for k, p in inspect.signature(partial.func).parameters.items()
                if p.default is not inspect.Parameter.empty}
    limits = {**defaults, **partial.keywords}
    return {k: limits[k] for k in CHECKED_FILTER_KEYS}


def check_list(list_path: str, tokenizer: Any, allowed_special: Any, limits: dict | None, online: bool) -> dict:
    import pyarrow.parquet as pq
    import soundfile as sf

    report: dict[str, Any] = {"list": list_path, "total": 0, "kept": 0, "dropped": {}, "examples": {},
                              "limits": limits}
    with open(list_path, encoding="utf-8") as fh:
        shards = [line.strip() for line in fh if line.strip()]
    for shard in shards:
        columns = [c for c in ("utt", "audio_data", "text", "speech_token") if c in pq.read_schema(shard).names]
        for row in pq.read_table(shard, columns=columns).to_pylist():
            report["total"] += 1
            if limits is None:
                report["kept"] += 1
                continue
            info = sf.info(io.BytesIO(row["audio_data"]))
            frames = info.frames / info.samplerate * 100
            text_tokens = len(tokenizer.encode(row["text"], allowed_special=allowed_special))
            speech = None if online or "speech_token" not in row else len(row["speech_token"] or [])
            reason = drop_reason(frames, text_tokens, speech, limits)
            if reason is None:
                report["kept"] += 1
            else:
                report["dropped"][reason] = report["dropped"].get(reason, 0) + 1
                report["examples"].setdefault(reason, [])
                if len(report["examples"][reason]) < 5:
                    report["examples"][reason].append(str(row["utt"]))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--qwen_pretrain_path", default=None)
    parser.add_argument("--online", action="store_true", help="speech tokens are extracted during training")
    parser.add_argument("lists", nargs="+")
    args = parser.parse_args(argv)
    from hyperpyyaml import load_hyperpyyaml

    overrides: dict[str, Any] = {k: None for k in ("llm", "flow", "hift", "hifigan")}
    if args.qwen_pretrain_path:
        overrides["qwen_pretrain_path"] = args.qwen_pretrain_path
    with open(args.config, encoding="utf-8") as fh:
        configs = load_hyperpyyaml(fh, overrides=overrides, overrides_must_match=False)
    limits = filter_limits(configs)
    tokenizer = configs["get_tokenizer"]() if limits is not None else None
    for list_path in args.lists:
        report = check_list(list_path, tokenizer, configs.get("allowed_special", "all"), limits, args.online)
        print(MARK + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
