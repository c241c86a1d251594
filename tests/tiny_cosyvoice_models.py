"""Tiny randomly initialised CosyVoice2 / CosyVoice3 model dirs, built from upstream's own example yaml.

``build_model_dir(checkout, version, out)`` takes
``examples/libritts/cosyvoice{2,3}/conf/cosyvoice{2,3}.yaml`` from the upstream
checkout, shrinks the sizes that upstream does not hard-code (layers, widths,
heads; the Qwen hidden size 896, the CosyVoice2 flow encoder width 512, 80
mel bins and 24 kHz stay), and writes a model dir AutoModel loads:
``cosyvoice{2,3}.yaml``, ``llm.pt`` / ``flow.pt`` / ``hift.pt`` (state dicts
of the very classes the yaml names, instantiated by upstream's hyperpyyaml),
``CosyVoice-BlankEN/`` (a 1-layer Qwen2 with a byte-level tokenizer) and the
tiny ONNX front-ends of ``tiny_cosyvoice_onnx``.

CosyVoice3 hard-codes ``<|endofprompt|>`` = token id 151646, so its
tokenizer keeps Qwen's special-token ids (151643..151645) and the Qwen
vocabulary must reach 151647: its embedding is the one big tensor
(136M floats); everything else is small.

Upstream code runs only in a child process (``python tiny_cosyvoice_models.py``)
with the environment our engine gives upstream processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
YAML_NAME = {"v2": "cosyvoice2.yaml", "v3": "cosyvoice3.yaml"}
EXAMPLE_DIR = {"v2": "cosyvoice2", "v3": "cosyvoice3"}
# Qwen's own ids of its three special tokens; upstream's tokenizer adds <|endofprompt|> right after them.
QWEN_SPECIAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}

# (yaml path, value) edits per version: sizes only, same classes.
SHRINK: dict[str, list[tuple[tuple[str, ...], object]]] = {
    "v2": [
        (("flow", "encoder", "attention_heads"), 2),
        (("flow", "encoder", "linear_units"), 64),
        (("flow", "encoder", "num_blocks"), 1),
        (("flow", "decoder", "estimator", "channels"), "[32]"),
        (("flow", "decoder", "estimator", "attention_head_dim"), 16),
        (("flow", "decoder", "estimator", "n_blocks"), 1),
        (("flow", "decoder", "estimator", "num_mid_blocks"), 1),
        (("flow", "decoder", "estimator", "num_heads"), 2),
        (("hift", "base_channels"), 32),
        (("hift", "f0_predictor", "cond_channels"), 32),
    ],
    "v3": [
        (("flow", "pre_lookahead_layer", "channels"), 32),
        (("flow", "decoder", "estimator", "dim"), 64),
        (("flow", "decoder", "estimator", "depth"), 1),
        (("flow", "decoder", "estimator", "heads"), 2),
        (("flow", "decoder", "estimator", "dim_head"), 32),
        (("hift", "base_channels"), 32),
        (("hift", "f0_predictor", "cond_channels"), 32),
    ],
}


def tiny_yaml(checkout: str | Path, version: str) -> str:
    """Upstream's example yaml for ``version`` with the shrunk sizes."""
    from engines.cosyvoice.config import set_yaml_value

    src = Path(checkout) / "examples" / "libritts" / EXAMPLE_DIR[version] / "conf" / YAML_NAME[version]
    text = src.read_text(encoding="utf-8")
    for path, value in SHRINK[version]:
        text = set_yaml_value(text, path, value)
    return text


def _byte_level_tokenizer(out: Path, version: str) -> int:
    """A byte-level BPE tokenizer (no merges) in HF format; returns the vocabulary the model needs.

    For CosyVoice3 the BPE vocabulary is padded with unreachable entries (no
    merges can produce them) so Qwen's special tokens sit at their real ids
    and upstream's added ``<|endofprompt|>`` lands on 151646.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    first_special = min(QWEN_SPECIAL_IDS.values()) if version == "v3" else len(vocab)
    vocab.update({f"<|unused_{i}|>": i for i in range(len(vocab), first_special)})
    for offset, name in enumerate(QWEN_SPECIAL_IDS):
        vocab[name] = first_special + offset
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(QWEN_SPECIAL_IDS))
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "model_max_length": 32768}), encoding="utf-8")
    # upstream adds its special tokens right after: <|endofprompt|> third (CosyVoice3: 151646), ~300 in all
    return len(vocab) + 320


def _write_qwen(out: Path, version: str) -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    vocab = _byte_level_tokenizer(out, version)
    config = Qwen2Config(vocab_size=vocab, hidden_size=896, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         tie_word_embeddings=True, rope_theta=1000000.0)
    import torch

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(str(out))


def _build_in_child(checkout: Path, version: str, out: Path) -> None:
    """Runs inside the upstream environment: instantiate the yaml with upstream's classes and save."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    from tiny_cosyvoice_onnx import build_campplus, build_speech_tokenizer

    out.mkdir(parents=True, exist_ok=True)
    (out / YAML_NAME[version]).write_text(tiny_yaml(checkout, version), encoding="utf-8")
    qwen = out / "CosyVoice-BlankEN"
    _write_qwen(qwen, version)
    torch.manual_seed(0)
    with open(out / YAML_NAME[version], encoding="utf-8") as fh:
        configs = load_hyperpyyaml(fh, overrides={"qwen_pretrain_path": str(qwen), "hifigan": None})
    for name in ("llm", "flow", "hift"):
        torch.save(configs[name].state_dict(), out / f"{name}.pt")
    build_campplus(out / "campplus.onnx")
    build_speech_tokenizer(out / f"speech_tokenizer_{version}.onnx")


def build_model_dir(checkout: str | Path, version: str, out: str | Path) -> Path:
    """Build the tiny model dir in a child process that runs upstream's code (as our engine runs it)."""
    from engines.cosyvoice.upstream import upstream_env

    out = Path(out)
    env = upstream_env(checkout, extra_paths=[str(HERE)])
    proc = subprocess.run([sys.executable, str(Path(__file__)), str(checkout), version, str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"building the tiny {version} model dir failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return out


if __name__ == "__main__":
    _build_in_child(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
