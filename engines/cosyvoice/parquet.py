"""Parquet shards in the layout upstream CosyVoice's training data pipeline reads.

Upstream's ``make_parquet_list.py`` writes shards named ``parquet_%09d.tar``
(they are parquet files) with the columns, in order::

    utt string | audio_data binary (the wav file's bytes) | wav string | text string |
    spk string | utt_embedding list<double> | spk_embedding list<double> |
    speech_token list<int64> [| instruct string]

plus ``utt2parquet_%09d.json`` / ``spk2parquet_%09d.json`` maps (indent 2)
and ``data.list`` / ``utt2data.list`` / ``spk2data.list`` (one absolute path
per line). We write the same, but with a correct ``spk2parquet`` map
(upstream's is always empty) and every file atomically. A fingerprint of
each shard's inputs is kept in ``shards.json`` so an unchanged shard is not
rewritten when the preparation is resumed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from engines.core.atomic import atomic_path, write_json, write_text

SHARD_NAME = "parquet_{:09d}.tar"
UTT_MAP_NAME = "utt2parquet_{:09d}.json"
SPK_MAP_NAME = "spk2parquet_{:09d}.json"
FINGERPRINTS = "shards.json"
MAX_UTTS_PER_SHARD = 1000  # upstream's default shard size
_SHARD_FILE = re.compile(r"^(parquet|utt2parquet|spk2parquet)_(\d{9})\.(tar|json)$")


@dataclass
class UttRecord:
    """Everything one parquet row holds (the audio bytes are read from ``wav`` when written)."""

    utt: str
    wav: str
    text: str
    spk: str
    utt_embedding: list[float] | None = None
    spk_embedding: list[float] | None = None
    speech_token: list[int] | None = None
    instruct: str | None = None


@dataclass
class ShardResult:
    data_list: Path
    shards: list[Path] = field(default_factory=list)
    written: int = 0
    reused: int = 0


def shard_size(num_utts: int, data_workers: int = 2, num_gpus: int = 1, shards_per_worker: int = 4,
               max_per_shard: int = MAX_UTTS_PER_SHARD) -> int:
    """Utterances per shard so every data-loader worker on every GPU gets ``shards_per_worker`` shards.

    Upstream hands whole shards to workers, so fewer shards than
    ``gpus x workers`` leaves workers idle; shards never exceed upstream's 1000.
    """
    target_shards = max(1, data_workers) * max(1, num_gpus) * max(1, shards_per_worker)
    return max(1, min(max_per_shard, math.ceil(max(1, num_utts) / target_shards)))


def _schema(with_instruct: bool, with_embeddings: bool, with_tokens: bool):
    import pyarrow as pa

    fields = [
        pa.field("utt", pa.string()),
        pa.field("audio_data", pa.binary()),
        pa.field("wav", pa.string()),
        pa.field("text", pa.string()),
        pa.field("spk", pa.string()),
    ]
    if with_embeddings:
        fields += [pa.field("utt_embedding", pa.list_(pa.float64())),
                   pa.field("spk_embedding", pa.list_(pa.float64()))]
    if with_tokens:
        fields.append(pa.field("speech_token", pa.list_(pa.int64())))
    if with_instruct:
        fields.append(pa.field("instruct", pa.string()))
    return pa.schema(fields)


def _fingerprint(records: Sequence[UttRecord]) -> str:
    digest = hashlib.sha256()
    for r in records:
        try:
            st = os.stat(r.wav)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(json.dumps([r.utt, r.wav, stamp, r.text, r.spk, r.instruct, r.speech_token,
                                  r.utt_embedding, r.spk_embedding], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


def write_shard(records: Sequence[UttRecord], path: Path) -> Path:
    """One parquet shard (a single row group) with upstream's columns, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with_instruct = records[0].instruct is not None
    with_embeddings = records[0].utt_embedding is not None
    with_tokens = records[0].speech_token is not None
    schema = _schema(with_instruct, with_embeddings, with_tokens)
    columns: dict[str, list] = {name: [] for name in schema.names}
    for r in records:
        columns["utt"].append(r.utt)
        columns["audio_data"].append(Path(r.wav).read_bytes())
        columns["wav"].append(r.wav)
        columns["text"].append(r.text)
        columns["spk"].append(r.spk)
        if with_embeddings:
            columns["utt_embedding"].append([float(v) for v in r.utt_embedding or []])
            columns["spk_embedding"].append([float(v) for v in r.spk_embedding or []])
        if with_tokens:
            columns["speech_token"].append([int(v) for v in r.speech_token or []])
        if with_instruct:
            columns["instruct"].append(r.instruct or "")
    table = pa.table(columns, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=max(1, len(records)))
    return path


def write_shards(records: Sequence[UttRecord], out_dir: str | os.PathLike, utts_per_shard: int,
                 force: bool = False, on_shard: Callable[[int, int], None] | None = None) -> ShardResult:
    """Write all shards, maps and lists for one split into ``out_dir``; unchanged shards are kept.

    Shard files from an earlier run that are no longer listed are removed.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    records = sorted(records, key=lambda r: r.utt)
    groups = [records[i:i + utts_per_shard] for i in range(0, len(records), max(1, utts_per_shard))]
    fp_path = out / FINGERPRINTS
    try:
        old_prints = json.loads(fp_path.read_text(encoding="utf-8")) if fp_path.is_file() and not force else {}
    except ValueError:
        old_prints = {}
    new_prints: dict[str, str] = {}
    result = ShardResult(data_list=out / "data.list")
    utt_maps, spk_maps = [], []
    for index, group in enumerate(groups):
        shard = out / SHARD_NAME.format(index)
        utt_map = out / UTT_MAP_NAME.format(index)
        spk_map = out / SPK_MAP_NAME.format(index)
        fingerprint = _fingerprint(group)
        if (not force and old_prints.get(shard.name) == fingerprint
                and shard.is_file() and utt_map.is_file() and spk_map.is_file()):
            result.reused += 1
        else:
            write_shard(group, shard)
            write_json(utt_map, {r.utt: str(shard) for r in group})
            write_json(spk_map, {spk: str(shard) for spk in sorted({r.spk for r in group})})
            result.written += 1
        new_prints[shard.name] = fingerprint
        result.shards.append(shard)
        utt_maps.append(utt_map)
        spk_maps.append(spk_map)
        if on_shard is not None:
            on_shard(index + 1, len(groups))
    write_json(fp_path, new_prints)
    write_text(out / "data.list", "".join(f"{p}\n" for p in result.shards))
    write_text(out / "utt2data.list", "".join(f"{p}\n" for p in utt_maps))
    write_text(out / "spk2data.list", "".join(f"{p}\n" for p in spk_maps))
    keep = {p.name for p in result.shards + utt_maps + spk_maps}
    for stale in out.iterdir():
        if _SHARD_FILE.match(stale.name) and stale.name not in keep:
            stale.unlink(missing_ok=True)
    return result


def read_shard_rows(path: str | os.PathLike) -> list[dict]:
    """All rows of a shard as dicts (for checks and the UI's data preview)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()
