"""Index build (upstream sizing, reduction, file names), loading and the retrieval blend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines.core.errors import InvalidInputError, InvalidModelError
from engines.rvc.index import (
    IndexParams,
    blend_retrieval,
    build_index,
    ivf_size,
    load_index,
    minibatch_kmeans,
    read_shuffled,
    scan_features,
)


def _write_features(ws, exp, dim, sizes, seed=0):
    rng = np.random.default_rng(seed)
    folder = ws.experiment_dir(exp) / f"3_feature{dim}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, n in enumerate(sizes):
        x = rng.standard_normal((n, dim)).astype(np.float32)
        np.save(folder / f"{i:04d}.npy", x)
        rows.append(x)
    return np.concatenate(rows) if rows else np.zeros((0, dim), np.float32)


@pytest.mark.parametrize("n, expected", [(1, 1), (38, 1), (39, 1), (100, 2), (4000, 102), (10_000, 256),
                                         (200_000, 5128), (1_000_000, 16000)])
def test_ivf_size_is_upstream_rule(n, expected):
    assert ivf_size(n) == expected == max(1, min(int(16 * math.sqrt(n)), n // 39))


def test_build_small_index_files_and_contents(ws):
    feats = _write_features(ws, "spk", 256, [10, 0, 15, 5])  # includes an empty file; N = 30 < 39
    res = build_index(ws, "spk", IndexParams(version="v1"))
    assert res.frames == res.kept_vectors == 30 and res.n_ivf == 1 and res.dim == 256 and not res.reduced
    assert res.index_path.name == "added_IVF1_Flat_nprobe_1_spk_v1.index"
    assert res.index_path.parent == ws.experiment_dir("spk")
    assert res.workspace_index_path == ws.indices / "spk.index" and res.file_size > 30 * 256 * 4
    loaded = load_index(res.workspace_index_path, expected_dim=256)
    assert loaded.vectors is None  # no second copy of the vectors: the search returns the neighbours'
    stored = loaded.index.reconstruct_n(0, loaded.index.ntotal)
    assert stored.shape == (30, 256)
    # every training frame is in the index exactly once (shuffled)
    a = np.sort(stored.view(np.uint8).reshape(30, -1), axis=0)
    b = np.sort(feats.view(np.uint8).reshape(30, -1), axis=0)
    assert np.array_equal(a, b)
    assert not list(ws.experiment_dir("spk").glob(".*part*"))  # no temp files left behind


def test_build_medium_index_sizing_and_nprobe(ws):
    _write_features(ws, "m", 768, [700, 900, 400])
    res = build_index(ws, "m", IndexParams(version="v2", max_train_frames=1500))
    assert res.kept_vectors == 2000 and res.n_ivf == ivf_size(2000) == 51
    import faiss

    idx = faiss.read_index(str(res.index_path))
    assert faiss.extract_index_ivf(idx).nprobe == 1 and idx.nlist == 51 and idx.ntotal == 2000


def test_reduction_above_threshold(ws):
    _write_features(ws, "big", 256, [1500, 1500, 1000])
    res = build_index(ws, "big", IndexParams(version="v1", max_train_frames=2000), reduce_above=3000, reduced_centres=300)
    assert res.reduced and res.frames == 4000 and res.kept_vectors == 300 and res.n_ivf == ivf_size(300) == 7
    assert load_index(res.index_path, 256).index.ntotal == 300


def test_read_shuffled_sample_is_uniform_subset(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(5):
        np.save(folder / f"{i}.npy", np.full((100, 4), i * 100, np.float32) + np.arange(100, dtype=np.float32)[:, None])
    files = scan_features(folder, 4)
    x = read_shuffled(files, 4, np.random.default_rng(1), take=250)
    ids = x[:, 0].astype(int)
    assert len(set(ids)) == 250 and ids.min() >= 0 and ids.max() < 500
    assert not np.all(np.diff(ids) > 0)  # shuffled
    assert 0.3 < (ids < 250).mean() < 0.7  # drawn from the whole set, not the first files


def test_minibatch_kmeans_finds_clusters():
    rng = np.random.default_rng(0)
    true = rng.standard_normal((5, 16)).astype(np.float32) * 10
    x = (true[rng.integers(0, 5, 5000)] + rng.standard_normal((5000, 16)) * 0.1).astype(np.float32)
    centres = minibatch_kmeans(x, 5, rng, batch=500, passes=3)
    nearest = np.min(((true[:, None] - centres[None]) ** 2).sum(-1), axis=1)
    assert centres.shape == (5, 16) and (nearest < 4.0).sum() >= 4


def test_wrong_dimension_features_and_index_refused(ws):
    _write_features(ws, "x", 768, [100])
    with pytest.raises(InvalidInputError, match="no v1 features"):
        build_index(ws, "x", IndexParams(version="v1"))
    res = build_index(ws, "x", IndexParams(version="v2"))
    with pytest.raises(InvalidModelError, match="768-d vectors .*RVC v2.* model is RVC v1"):
        load_index(res.workspace_index_path, expected_dim=256)


@pytest.mark.parametrize("copy", [True, False], ids=["big_npy", "from-search"])
def test_blend_retrieval_by_hand(copy):
    import faiss

    big = np.array([[0, 0], [2, 0], [10, 10]], np.float32)
    index = faiss.IndexFlatL2(2)
    index.add(big)
    vectors = big if copy else None  # upstream's copy of the vectors, or the neighbours from the search
    feats = np.array([[1.0, 1.0]], np.float32)
    out = blend_retrieval(feats, index, vectors, index_rate=0.5, k=2)
    # squared L2 distances to rows 0 and 1 are both 2 -> equal weights -> mean (1, 0)
    assert np.allclose(out, 0.5 * np.array([[1.0, 0.0]]) + 0.5 * feats)
    feats2 = np.array([[0.5, 0.0]], np.float32)  # d0 = 0.25, d1 = 2.25 -> w ~ 1/d^2: 16 vs 0.1975
    w0, w1 = 16.0, 1 / 2.25**2
    exp = (w0 * big[0] + w1 * big[1]) / (w0 + w1)
    assert np.allclose(blend_retrieval(feats2, index, vectors, 1.0, k=2), exp[None], atol=1e-6)
    assert np.array_equal(blend_retrieval(feats2, index, vectors, 0.0, k=2), feats2)
    # an exact hit does not give NaN (upstream would), it returns the hit
    assert np.allclose(blend_retrieval(big[:1], index, vectors, 1.0, k=3), big[:1])
    # more neighbours asked than vectors exist: missing ids get no weight
    out = blend_retrieval(feats, index, vectors, 1.0, k=8)
    assert np.isfinite(out).all()


def test_index_cli_in_process(ws, capsys):
    import json

    from engines.cli import build_parser

    _write_features(ws, "cli", 768, [50, 60])
    args = build_parser().parse_args(["rvc", "index", "--exp-name", "cli", "--version", "v2", "--max-train-frames",
                                      "1000", "--json"])
    assert args.func(args, ws) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 110 and out["n_ivf"] == 2 and out["index"].endswith("cli.index")


def test_index_header_is_read_without_faiss_and_refuses_other_files(tmp_path):
    import faiss

    from engines.core.errors import InvalidModelError
    from engines.rvc.index import read_index_header

    rng = np.random.default_rng(0)
    for dim, factory in ((768, "IVF4,Flat"), (256, "Flat"), (256, "IVF3,PQ8")):
        x = rng.standard_normal((300, dim)).astype(np.float32)
        index = faiss.index_factory(dim, factory)
        index.train(x)
        index.add(x)
        path = tmp_path / f"{dim}-{factory.replace(',', '_')}.index"
        faiss.write_index(index, str(path))
        head = read_index_header(path)
        assert (head.dim, head.ntotal, head.version) == (dim, 300, "v2" if dim == 768 else "v1")
        assert head.nlist == (int(factory[3]) if factory.startswith("IVF") else None)
    empty = faiss.index_factory(768, "IVF2,Flat")
    empty.train(rng.standard_normal((100, 768)).astype(np.float32))
    faiss.write_index(empty, str(tmp_path / "trained.index"))
    assert read_index_header(tmp_path / "trained.index").ntotal == 0
    full = tmp_path / "768-IVF4_Flat.index"
    (tmp_path / "cut.index").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(InvalidModelError, match="truncated"):
        read_index_header(tmp_path / "cut.index")
    (tmp_path / "text.index").write_text("not an index at all, just some words here and there")
    with pytest.raises(InvalidModelError, match="not a faiss index"):
        read_index_header(tmp_path / "text.index")
