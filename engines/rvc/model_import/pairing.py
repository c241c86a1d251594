"""Which index belongs to which voice.

The feature dimension read from both files decides what can pair at all
(a v1 voice reads 256-d vectors, a v2 voice 768-d); among those, names and
folders choose: the experiment name in upstream's index file name
(``added_IVF<n>_Flat_nprobe_1_<exp>_<version>.index``), the voice's name
without its checkpoint suffix (``_e<E>_s<S>``, Applio's ``_<E>e_<S>s``),
the folder both sit in, or an RVC WebUI run folder named like the voice.
When the best choice is not clear, nothing is guessed: the voice is
reported with its candidates and the user's ``choices`` decide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from engines.core.errors import InvalidInputError
from engines.rvc.model_import.scan import Candidate, is_top

NO_INDEX = "none"
_INDEX_PREFIX = re.compile(r"^(?:added|trained)_IVF\d+_Flat_nprobe_\d+_", re.IGNORECASE)
_TAILS = (re.compile(r"_v[12]$", re.IGNORECASE), re.compile(r"_e\d+_s\d+$"), re.compile(r"_\d+e_\d+s$"),
          re.compile(r"[_ -]?\d+\s*epochs?$", re.IGNORECASE))


def index_experiment(stem: str) -> str:
    """The experiment name in upstream's index file name ("added_IVF9_Flat_nprobe_1_Kiki_v2" -> "Kiki")."""
    return re.sub(r"_v[12]$", "", _INDEX_PREFIX.sub("", stem), flags=re.IGNORECASE)


def name_key(stem: str) -> str:
    """A file name reduced to the voice/experiment name it carries ("added_IVF9_..._Kiki_v2" -> "kiki")."""
    s = _INDEX_PREFIX.sub("", stem)
    for rx in _TAILS:
        s = rx.sub("", s)
    return re.sub(r"[\s_.()\[\]-]+", " ", s).strip().lower()


def _score(voice: Candidate, index: Candidate) -> float:
    vk, ik = name_key(voice.stem), name_key(index.stem)
    score = 0.0
    if vk and vk == ik:
        score += 4
    elif vk and ik and (vk in ik or ik in vk):
        score += 2
    else:
        a, b = set(vk.split()), set(ik.split())
        score += 2 * len(a & b) / max(1, len(a | b))
    if not is_top(voice.folder) and voice.folder == index.folder:
        score += 3
    if vk and index.folder.rsplit("/", 1)[-1].lower() == vk:  # RVC WebUI: assets/weights/x.pth + logs/x/added_...
        score += 3
    return score


@dataclass
class Pairing:
    pairs: dict[str, str | None] = field(default_factory=dict)  # voice rel -> index rel (None: no index)
    ambiguous: list[dict] = field(default_factory=list)  # {"voice", "version", "candidates": [index rels]}
    reasons: dict[str, str] = field(default_factory=dict)  # voice rel -> how its index was chosen


def _find(items: Sequence[Candidate], key: str) -> Candidate | None:
    for c in items:
        if key in (c.rel, c.path.name, c.stem):
            return c
    return None


def _chosen(voices: Sequence[Candidate], indexes: Sequence[Candidate],
            choices: Mapping[str, str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, value in choices.items():
        voice = _find(voices, key.strip())
        if voice is None:
            raise InvalidInputError(f"No voice '{key}' in this source.",
                                    "Name a voice by its file name or its path in the source, e.g. voice.pth=x.index.")
        if value.strip().lower() in (NO_INDEX, ""):
            out[voice.rel] = None
            continue
        index = _find(indexes, value.strip())
        if index is None:
            raise InvalidInputError(f"No index '{value}' in this source.",
                                    f"Pick one of: {', '.join(i.rel for i in indexes) or '(none)'}, or '{NO_INDEX}'.")
        if index.version != voice.version:
            raise InvalidInputError(f"{index.rel} holds {index.detail.get('dim')}-d vectors (RVC {index.version}) but "
                                    f"{voice.rel} is an RVC {voice.version} voice.", "Pick an index of the same version.")
        out[voice.rel] = index.rel
    return out


def parse_choices(lines: Sequence[str]) -> dict[str, str]:
    """``voice=index`` entries (one per item; 'none' = no index) as a dict."""
    out = {}
    for line in lines:
        if not line.strip():
            continue
        voice, sep, index = line.partition("=")
        if not sep or not voice.strip():
            raise InvalidInputError(f"'{line}' is not a choice.", "Write each as voice.pth=index.index (or voice.pth=none).")
        out[voice.strip()] = index.strip()
    return out


def pair_indexes(voices: Sequence[Candidate], indexes: Sequence[Candidate],
                 choices: Mapping[str, str] | None = None) -> Pairing:
    """An index (or none) for every voice, or the voices whose index is the user's choice."""
    result = Pairing()
    chosen = _chosen(voices, indexes, choices or {})
    for voice in voices:
        if voice.rel in chosen:
            result.pairs[voice.rel] = chosen[voice.rel]
            result.reasons[voice.rel] = "your choice"
            continue
        fitting = [i for i in indexes if i.version == voice.version]
        if not fitting:
            result.pairs[voice.rel] = None
            result.reasons[voice.rel] = f"no {voice.version} index in the source"
            continue
        ranked = sorted(fitting, key=lambda i: -_score(voice, i))
        best = _score(voice, ranked[0])
        top = [i for i in ranked if _score(voice, i) == best]
        same_version_voices = [v for v in voices if v.version == voice.version]
        if best > 0 and len(top) == 1:
            result.pairs[voice.rel] = top[0].rel
            result.reasons[voice.rel] = "name, folder and feature dimension"
        elif best == 0 and len(fitting) == 1 and len(same_version_voices) == 1:
            result.pairs[voice.rel] = fitting[0].rel
            result.reasons[voice.rel] = f"the only {voice.version} index"
        else:
            result.ambiguous.append({"voice": voice.rel, "version": voice.version,
                                     "candidates": [i.rel for i in ranked]})
    return result
