"""The faiss retrieval index of a voice: build it from an experiment's features, load it, blend with it.

Sizing and file naming follow upstream RVC exactly (DESIGN.md section 4), so
indexes built here work in upstream tools and the reverse:

* N feature frames (50 per second of training audio), shuffled;
* above 200 000 frames the set is reduced to 10 000 k-means centres first;
* ``n_ivf = max(1, min(int(16 * sqrt(N)), N // 39))`` lists, ``IVF{n_ivf},Flat``, nprobe 1;
* vectors added in batches of 8192;
* written as ``added_IVF{n}_Flat_nprobe_1_{exp}_{version}.index`` in the
  experiment folder and as ``indices/<exp>.index`` in the workspace.

What differs from upstream is memory: upstream loads every feature file,
concatenates them and then shuffles (two full copies). Here the files are
memory-mapped and read one at a time into a single preallocated array at
shuffled positions, so the peak is the kept vectors once plus the index's own
copy of them (~2x). Above the reduction threshold only a uniform random
sample of ``max_train_frames`` frames is read (streamed file by file), and the
10 000 centres come from a mini-batch k-means over that sample (faiss does
the nearest-centre search; no scikit-learn).
"""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engines.core.atomic import atomic_path
from engines.core.errors import InvalidInputError, InvalidModelError
from engines.core.hooks import Hooks, ensure_hooks
from engines.core.messages import msg
from engines.core.params import param

REDUCE_ABOVE = 200_000  # upstream: k-means reduction when N > 2e5
REDUCED_CENTRES = 10_000  # upstream: MiniBatchKMeans(n_clusters=10000)
ADD_BATCH = 8192  # upstream: batch_size_add
DIM_OF_VERSION = {"v1": 256, "v2": 768}
VERSION_OF_DIM = {v: k for k, v in DIM_OF_VERSION.items()}


@dataclass
class IndexParams:
    """Parameters of ``voicelab rvc index`` (shared by CLI, UI and API)."""

    version: str = param("v2", help="Model version the features belong to (v1: 256-d, v2: 768-d)", choices=("v1", "v2"))
    max_train_frames: int = param(
        200_000,
        help="At most this many (randomly chosen) frames train the quantizer / the k-means reduction",
        min=1000,
        max=50_000_000,
    )
    seed: int = param(0, help="Seed of the shuffle and the k-means", min=0, max=2**31 - 1, cli=False)


@dataclass
class IndexResult:
    """What a finished index build reports (shown in the UI and CLI)."""

    index_path: Path  # the experiment's upstream-named file
    workspace_index_path: Path  # indices/<exp>.index
    frames: int  # feature frames found on disk
    kept_vectors: int  # vectors in the index (N, or the k-means centres)
    n_ivf: int
    dim: int
    version: str
    reduced: bool
    seconds: float
    file_size: int

    def summary(self) -> str:
        mb = self.file_size / 1e6
        red = f", reduced to {self.kept_vectors} k-means centres" if self.reduced else ""
        return (
            f"Index built from {self.frames} frames{red}: IVF{self.n_ivf},Flat ({self.dim}-d, {self.version}), "
            f"{mb:.1f} MB, {self.seconds:.1f} s -> {self.workspace_index_path}"
        )


def ivf_size(n: int) -> int:
    """Upstream's inverted-list count for ``n`` vectors (at least 1)."""
    return max(1, min(int(16 * math.sqrt(n)), n // 39))


def upstream_index_name(n_ivf: int, exp: str, version: str) -> str:
    return f"added_IVF{n_ivf}_Flat_nprobe_1_{exp}_{version}.index"


def feature_dir(exp_dir: Path, version: str) -> Path:
    return Path(exp_dir) / f"3_feature{DIM_OF_VERSION[version]}"


# ---------------------------------------------------------------------------
# reading features without holding them twice


@dataclass
class _FeatureFile:
    path: Path
    rows: int


def scan_features(folder: Path, dim: int) -> list[_FeatureFile]:
    """The non-empty .npy feature files of ``folder`` (sorted) with their row counts.

    Only headers are read (memory maps), and every file must be ``[frames, dim]``.
    """
    files = []
    for path in sorted(Path(folder).glob("*.npy")):
        try:
            arr = np.load(path, mmap_mode="r")
        except Exception as exc:  # corrupt or truncated file
            raise InvalidInputError(f"Feature file {path.name} cannot be read ({exc}).",
                                    "Re-run feature extraction for this experiment.") from exc
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise InvalidInputError(
                f"Feature file {path.name} has shape {tuple(arr.shape)}, expected [frames, {dim}].",
                f"The features were extracted for another model version; re-extract them for "
                f"{VERSION_OF_DIM.get(dim, '?')} or choose the matching version.",
            )
        if arr.shape[0]:
            files.append(_FeatureFile(path, int(arr.shape[0])))
        del arr
    return files


def _read_rows(path: Path, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows of one feature file as float32 (all rows when ``rows`` is None); the map is released after."""
    arr = np.load(path, mmap_mode="r")
    try:
        out = np.asarray(arr if rows is None else arr[rows], dtype=np.float32)
        return np.array(out, dtype=np.float32, copy=True) if out.base is not None else out
    finally:
        del arr


def read_shuffled(files: Sequence[_FeatureFile], dim: int, rng: np.random.Generator,
                  take: int | None = None, hooks: Hooks | None = None) -> np.ndarray:
    """A uniformly shuffled array of all frames (or a uniform random ``take`` of them).

    Files are read one at a time and scattered straight into the single output
    array, so only the output (plus one file) is ever in memory.
    """
    hooks = ensure_hooks(hooks)
    total = sum(f.rows for f in files)
    n = total if take is None else min(int(take), total)
    out = np.empty((n, dim), dtype=np.float32)
    if n == total:
        chosen = None
        dest = rng.permutation(total)
    else:
        chosen = np.sort(rng.choice(total, size=n, replace=False))
        dest = rng.permutation(n)
    offset = 0  # global row index of the current file's first row
    filled = 0  # rows written so far
    for i, f in enumerate(files):
        hooks.check_cancel()
        if chosen is None:
            block = _read_rows(f.path)
            out[dest[offset : offset + f.rows]] = block
            filled += f.rows
        else:
            lo, hi = np.searchsorted(chosen, [offset, offset + f.rows])
            if hi > lo:
                block = _read_rows(f.path, chosen[lo:hi] - offset)
                out[dest[filled : filled + (hi - lo)]] = block
                filled += hi - lo
        offset += f.rows
        if i % 64 == 0:
            hooks.progress(offset / max(total, 1), msg("progress.index_reading", done=offset, total=total))
    assert filled == n
    return out


# ---------------------------------------------------------------------------
# k-means reduction


def minibatch_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, batch: int = 4096,
                     passes: int = 1, hooks: Hooks | None = None) -> np.ndarray:
    """Mini-batch k-means (Sculley 2010) over ``x``: ``k`` centres, random-sample initialisation.

    The same algorithm family as upstream's ``MiniBatchKMeans(init="random")``:
    each batch is assigned to its nearest centres and every centre moves
    towards its batch mean with a step of (batch count / total count so far).
    Centres that never receive a frame keep their initial sample (a real frame).
    """
    import faiss

    hooks = ensure_hooks(hooks)
    n, d = x.shape
    k = min(k, n)
    centres = np.array(x[rng.choice(n, size=k, replace=False)], dtype=np.float32)
    counts = np.zeros(k, dtype=np.float64)
    steps = max(1, passes * math.ceil(n / batch))
    for step in range(steps):
        hooks.check_cancel()
        start = (step * batch) % n
        xb = x[start : start + batch]
        search = faiss.IndexFlatL2(d)
        search.add(centres)
        _, assign = search.search(xb, 1)
        assign = assign[:, 0]
        sums = np.zeros((k, d), dtype=np.float64)
        np.add.at(sums, assign, xb)
        got = np.bincount(assign, minlength=k).astype(np.float64)
        hit = got > 0
        counts[hit] += got[hit]
        rate = (got[hit] / counts[hit])[:, None]
        centres[hit] = (centres[hit] * (1.0 - rate) + (sums[hit] / got[hit][:, None]) * rate).astype(np.float32)
        if step % 8 == 0:
            hooks.progress((step + 1) / steps, msg("progress.index_kmeans", done=step + 1, total=steps))
    return centres


# ---------------------------------------------------------------------------
# build


def build_index(
    ws: Any,
    exp_name: str,
    params: IndexParams | None = None,
    hooks: Hooks | None = None,
    *,
    reduce_above: int = REDUCE_ABOVE,
    reduced_centres: int = REDUCED_CENTRES,
) -> IndexResult:
    """Build the retrieval index of experiment ``exp_name`` from its extracted features.

    ``reduce_above``/``reduced_centres`` are upstream's 200 000 / 10 000 and
    exist as arguments only so tests can exercise the reduction quickly.
    """
    import faiss

    from engines.core.params import validate

    hooks = ensure_hooks(hooks)
    params = validate(params or IndexParams())
    dim = DIM_OF_VERSION[params.version]
    exp_dir = ws.experiment_dir(exp_name)
    fdir = feature_dir(exp_dir, params.version)
    if not fdir.is_dir():
        raise InvalidInputError(msg("index.no_features", exp=exp_name, version=params.version, path=str(fdir)))
    t0 = time.perf_counter()
    files = scan_features(fdir, dim)
    total = sum(f.rows for f in files)
    if total == 0:
        raise InvalidInputError(msg("index.no_frames", exp=exp_name, path=str(fdir)))
    rng = np.random.default_rng(params.seed)
    reduced = total > reduce_above
    if reduced:
        hooks.log(f"{total} frames > {reduce_above}: reducing to {reduced_centres} k-means centres "
                  f"(trained on {min(total, params.max_train_frames)} random frames)")
        sample = read_shuffled(files, dim, rng, take=params.max_train_frames, hooks=hooks.scaled(0.0, 0.2))
        vectors = minibatch_kmeans(sample, reduced_centres, rng, hooks=hooks.scaled(0.2, 0.8))
        del sample
        train = vectors
    else:
        vectors = read_shuffled(files, dim, rng, hooks=hooks.scaled(0.0, 0.3))
        train = vectors[: params.max_train_frames]  # already shuffled: a uniform random subset (a view)
    n = vectors.shape[0]
    n_ivf = ivf_size(n)
    hooks.log(f"vectors {n} x {dim}, IVF{n_ivf},Flat")
    index = faiss.index_factory(dim, f"IVF{n_ivf},Flat")
    faiss.extract_index_ivf(index).nprobe = 1
    hooks.progress(0.85, msg("progress.index_training", n_ivf=n_ivf))
    index.train(train)
    del train
    for start in range(0, n, ADD_BATCH):
        hooks.check_cancel()
        index.add(vectors[start : start + ADD_BATCH])
        hooks.progress(0.85 + 0.1 * min(1.0, (start + ADD_BATCH) / n), msg("progress.index_adding", done=min(n, start + ADD_BATCH), total=n))
    del vectors
    long_path = exp_dir / upstream_index_name(n_ivf, exp_name, params.version)
    with atomic_path(long_path) as tmp:
        faiss.write_index(index, str(tmp))
    short_path = ws.indices / f"{exp_name}.index"
    with atomic_path(short_path) as tmp:
        faiss.write_index(index, str(tmp))
    result = IndexResult(
        index_path=long_path,
        workspace_index_path=short_path,
        frames=total,
        kept_vectors=n,
        n_ivf=n_ivf,
        dim=dim,
        version=params.version,
        reduced=reduced,
        seconds=time.perf_counter() - t0,
        file_size=short_path.stat().st_size,
    )
    hooks.progress(1.0, msg("progress.index_written"))
    hooks.log(result.summary())
    return result


# ---------------------------------------------------------------------------
# use at conversion time


@dataclass(frozen=True)
class IndexHeader:
    """What a faiss index file says about itself, read without faiss (imports check files they do not trust)."""

    kind: str  # faiss's four-character type code, e.g. "IwFl" = IVF with flat lists (upstream RVC's)
    dim: int
    ntotal: int
    nlist: int | None  # inverted lists (IVF kinds)

    @property
    def version(self) -> str | None:
        """The RVC version whose features the index holds (256-d: v1, 768-d: v2), or None."""
        return VERSION_OF_DIM.get(self.dim)


_FAISS_HEADER = struct.Struct("<4siqqq?i")  # fourcc, d, ntotal, two dummies (1 << 20), is_trained, metric
_FAISS_DUMMY = 1 << 20
_FLAT_STORAGE = ("IwFl", "IvFl", "IxF2", "IxFI")  # kinds that store every vector as d float32


def read_index_header(path: str | Path) -> IndexHeader:
    """Dimension, vector count and list count of a faiss index file, from its header only.

    Refuses (InvalidModelError) anything that is not a faiss index, and a flat-storage index whose
    file is too short for the vectors it claims; nothing beyond the header is parsed.
    """
    p = Path(path)
    not_index = InvalidModelError(f"{p.name} is not a faiss index.",
                                  "Use the added_IVF..._Flat_nprobe_1_....index file made with the voice.")
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(_FAISS_HEADER.size + 20)
    except OSError as exc:
        raise InvalidModelError(f"Cannot read {p.name} ({exc}).", "Check the file.") from exc
    if len(head) < _FAISS_HEADER.size:
        raise not_index
    fourcc, dim, ntotal, dummy1, dummy2, _, metric = _FAISS_HEADER.unpack_from(head)
    try:
        kind = fourcc.decode("ascii")
    except UnicodeDecodeError:
        raise not_index from None
    if not kind.isalnum() or dummy1 != _FAISS_DUMMY or dummy2 != _FAISS_DUMMY or not 0 < dim <= 65536 or ntotal < 0:
        raise not_index
    nlist = None
    if kind.startswith(("Iw", "Iv")):
        offset = _FAISS_HEADER.size + (4 if metric > 1 else 0)
        if len(head) >= offset + 8:
            nlist = struct.unpack_from("<Q", head, offset)[0]
    if kind in _FLAT_STORAGE and size < _FAISS_HEADER.size + ntotal * dim * 4:
        raise InvalidModelError(f"{p.name} is truncated: it claims {ntotal} vectors of {dim} values "
                                f"but holds {size} bytes.", "Download or copy the index again.")
    return IndexHeader(kind, int(dim), int(ntotal), None if nlist is None else int(nlist))


@dataclass
class LoadedIndex:
    """A faiss index, plus (optionally) the vectors it holds as one array (upstream's ``big_npy``).

    Upstream copies every vector out of the index (``reconstruct_n``) to look
    up the neighbours it found; that second copy is as large as the index
    (600 MB for a 200 000-vector v2 index). Here the neighbours' vectors come
    back with the search itself (``search_and_reconstruct``, same float32
    values), so ``vectors`` stays None unless an index type cannot do that.
    """

    path: Path
    index: Any
    vectors: np.ndarray | None  # [ntotal, dim] float32 when the index type needs the copy, else None
    dim: int

    @property
    def nbytes(self) -> int:
        own = int(self.index.ntotal) * int(self.dim) * 4
        return own + (int(self.vectors.nbytes) if self.vectors is not None else 0)


def load_index(path: str | Path, expected_dim: int | None = None) -> LoadedIndex:
    """Read an index file; refuse one built for another model version or holding no vectors."""
    import faiss

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"Index file not found: {p}", "Build the index first, or pick another file.")
    try:
        index = faiss.read_index(str(p))
    except Exception as exc:
        raise InvalidModelError(f"{p.name} is not a faiss index ({str(exc).splitlines()[0][:120]}).",
                                "Pick the .index file built for this voice (added_IVF..._Flat_...index).") from exc
    if expected_dim is not None and index.d != expected_dim:
        have = VERSION_OF_DIM.get(index.d, f"{index.d}-d")
        want = VERSION_OF_DIM.get(expected_dim, f"{expected_dim}-d")
        raise InvalidModelError(
            f"Index {p.name} holds {index.d}-d vectors (RVC {have}) but the model is RVC {want} "
            f"({expected_dim}-d features).",
            "Use the index built for this model's version, or convert without an index.",
        )
    if index.ntotal == 0:
        raise InvalidModelError(f"Index {p.name} is empty (trained but no vectors added).",
                                "Use the 'added_...' index, not the 'trained_...' one.")
    vectors = None
    if not _reconstructs_in_search(index):
        vectors = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32)
    return LoadedIndex(p, index, vectors, int(index.d))


def _reconstructs_in_search(index: Any) -> bool:
    """Whether ``search_and_reconstruct`` works for this index (IVF and flat indexes: yes)."""
    try:
        index.search_and_reconstruct(np.zeros((1, index.d), np.float32), 1)
        return True
    except RuntimeError:
        return False


RETRIEVE_BATCH = 1024  # frames per search: bounds the [frames, k, dim] neighbour array (~25 MB at 768-d)


def retrieve(feats: np.ndarray, index: Any, big_npy: np.ndarray | None = None, k: int = 8
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upstream's retrieval: each frame's k nearest index vectors, averaged with weights (1/distance)^2.

    Returns ``(retrieved [frames, dim], score [frames, k], ix [frames, k])``:
    ``score``/``ix`` as faiss ``search`` gives them, ``retrieved = sum_k w * vectors[ix]``
    with ``w = (1/score)^2`` normalised per row. Two guards upstream lacks,
    neither changing any value upstream produces as a number: a distance of
    exactly 0 (a frame equal to an index vector) is floored at 1e-18 (where
    float32 ``(1/score)^2`` still fits) instead of giving inf/inf = NaN, and
    missing neighbours (faiss id -1 when a list holds fewer than k vectors)
    get weight 0; a frame with no neighbour at all keeps its own features.
    The neighbours' vectors come from ``big_npy`` when given, else from the
    search itself.
    """
    x = np.ascontiguousarray(feats, dtype=np.float32)
    n = x.shape[0]
    retrieved = np.empty_like(x)
    scores = np.empty((n, k), np.float32)
    labels = np.empty((n, k), np.int64)
    for a in range(0, n, RETRIEVE_BATCH):
        xb = x[a : a + RETRIEVE_BATCH]
        if big_npy is None:
            score, ix, found = index.search_and_reconstruct(xb, k)
        else:
            score, ix = index.search(xb, k)
            found = big_npy[np.maximum(ix, 0)]
        scores[a : a + len(xb)], labels[a : a + len(xb)] = score, ix
        valid = ix >= 0
        found[~valid] = 0.0  # faiss gives NaN (flat) or -1 (IVF) vectors for missing neighbours
        weight = np.square(1.0 / np.maximum(score.astype(np.float32), np.float32(1e-18))) * valid
        norm = weight.sum(axis=1, keepdims=True)
        weight = np.divide(weight, norm, out=np.zeros_like(weight), where=norm > 0)
        block = np.sum(found * weight[:, :, None], axis=1)
        no_match = norm[:, 0] <= 0
        block[no_match] = xb[no_match]
        retrieved[a : a + len(xb)] = block
    return retrieved, scores, labels


def blend_retrieval(feats: np.ndarray, index: Any, big_npy: np.ndarray | None, index_rate: float,
                    k: int = 8) -> np.ndarray:
    """Upstream's retrieval blend: ``retrieved * index_rate + feats * (1 - index_rate)`` (see ``retrieve``)."""
    x = np.ascontiguousarray(feats, dtype=np.float32)
    if index_rate <= 0 or x.shape[0] == 0:
        return x
    retrieved, _, _ = retrieve(x, index, big_npy, k)
    return (retrieved * index_rate + x * (1 - index_rate)).astype(np.float32)
