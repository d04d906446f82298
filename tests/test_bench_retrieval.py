"""``ripple bench retrieval`` (annoy against exact search), on small sizes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from ripple.models.errors import UsageError
from ripple.training.bench_retrieval import (
    K,
    add_arguments,
    blas_default_threads,
    blas_threads,
    build_annoy,
    exact_top_k,
    load_vectors,
    pick_setting,
    random_unit_vectors,
    recall_at_k,
    run,
)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def _small(out: Path, *extra: str) -> argparse.Namespace:
    return _args(
        "--json",
        str(out),
        "--sizes",
        "200,500",
        "--queries",
        "20",
        "--trees",
        "2,4",
        "--search-k",
        "20,2000",
        "--quiet",
        *extra,
    )


def test_json_shape_and_exhaustive_search_is_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sub" / "bench.json"
    # search_k 2000 >= 500 items * 4 trees: annoy looks at every item, so it is exact.
    assert run(_small(out, "--dim", "16")) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["dim"] == 16
    assert set(data["sizes"]) == {"200", "500"}
    for size in data["sizes"].values():
        for key in ("recall@10", "query_ms_p50", "query_ms_p99", "build_s"):
            assert isinstance(size[key], float), key
        assert 0.0 <= size["recall@10"] <= 1.0
        assert size["query_ms_p50"] <= size["query_ms_p99"]
        assert size["exact_ms_p50"] <= size["exact_ms_p99"]
        assert len(size["grid"]) == 4
        for g in size["grid"]:
            assert 0.0 <= g["recall@10"] <= 1.0
            if g["search_k"] >= size["items"] * g["trees"]:
                assert g["recall@10"] == 1.0
        # Recall 1.0 is reachable, so the reported setting reaches the target.
        assert size["meets_recall"] is True
    assert not list(out.parent.glob(".*.tmp"))  # the temporary file was renamed away
    printed = capsys.readouterr().out
    assert "exact" in printed and "annoy" in printed and "recall@10" in printed


def test_default_dimension_is_64(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run(
        _args(
            "--json",
            str(out),
            "--sizes",
            "100",
            "--queries",
            "5",
            "--trees",
            "1",
            "--search-k",
            "50",
            "--quiet",
        )
    )
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["dim"] == 64
    assert data["sizes"]["100"]["trees"] == 1


def test_exact_search_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(1)
    items = random_unit_vectors(rng, 500, 32)
    for q in random_unit_vectors(rng, 10, 32):
        brute = np.argsort(-(items @ q), kind="stable")[:K]
        assert exact_top_k(items, q).tolist() == brute.tolist()
    # Fewer items than k: all of them, best first.
    few = items[:3]
    assert sorted(exact_top_k(few, items[0]).tolist()) == [0, 1, 2]
    assert exact_top_k(few, items[0])[0] == 0


def test_annoy_exhaustive_search_finds_the_exact_top_k() -> None:
    rng = np.random.default_rng(2)
    items = random_unit_vectors(rng, 300, 8)
    queries = random_unit_vectors(rng, 10, 8)
    index, build_s = build_annoy(items, trees=3, seed=0)
    assert build_s >= 0.0
    found = [index.get_nns_by_vector(q.tolist(), K, search_k=300 * 3) for q in queries]
    truth = [exact_top_k(items, q) for q in queries]
    assert recall_at_k(found, truth) == 1.0
    index.unload()


def test_recall_at_k() -> None:
    truth = [list(range(10)), list(range(10, 20))]
    assert recall_at_k([list(range(10)), list(range(10, 20))], truth) == 1.0
    assert recall_at_k([list(range(5)) + [99] * 5, []], [list(range(10)), [1]]) == 0.25
    assert recall_at_k([[], []], truth) == 0.0


def test_pick_setting_cheapest_reaching_target_else_best_recall() -> None:
    grid = [
        {"trees": 1, "search_k": 1, "recall@10": 0.5, "query_ms_p50": 0.1, "build_s": 1.0},
        {"trees": 2, "search_k": 1, "recall@10": 0.96, "query_ms_p50": 0.9, "build_s": 1.0},
        {"trees": 3, "search_k": 1, "recall@10": 0.99, "query_ms_p50": 2.0, "build_s": 1.0},
    ]
    assert pick_setting(grid, 0.95)["trees"] == 2
    assert pick_setting(grid, 0.999)["trees"] == 3


def test_real_vectors_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((5, 12))
    raw = centers[rng.integers(0, 5, 300)] + 0.1 * rng.standard_normal((300, 12))
    raw[7] = 0.0  # no direction: dropped
    path = tmp_path / "emb.npy"
    np.save(path, raw)
    vectors, dropped = load_vectors(path)
    assert vectors.shape == (299, 12) and dropped == 1
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    out = tmp_path / "bench.json"
    # 299 rows - 20 queries held out = 279 items: the size 500 is capped.
    assert run(_small(out, "--vectors", str(path))) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["dim"] == 12
    assert set(data["sizes"]) == {"200", "279"}
    assert data["dropped_zero_rows"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--dim", "0"), "--dim"),
        (("--dim", "-3"), "--dim"),
        (("--queries", "0"), "--queries"),
        (("--sizes", "10,abc"), "--sizes"),
        (("--trees", "0"), "--trees"),
        (("--target-recall", "1.5"), "--target-recall"),
        (("--vectors", "does-not-exist.npy"), "no such file"),
    ],
)
def test_bad_arguments_are_usage_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: tuple[str, ...], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "bench.json"
    with pytest.raises(UsageError, match=message):
        run(_small(out, *extra))
    assert not out.exists()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(10), "2-D"),
        (np.zeros((2, 3, 4)), "2-D"),
        (np.zeros((0, 8)), "2-D"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
        (np.array([[1.0, np.nan]]), "NaN"),
    ],
)
def test_ill_shaped_vectors_are_usage_errors(
    tmp_path: Path, array: np.ndarray, message: str
) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(UsageError, match=message):
        run(_small(tmp_path / "bench.json", "--vectors", str(path)))


def test_unreadable_or_too_small_vectors_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not numpy at all")
    with pytest.raises(UsageError, match="not a readable"):
        run(_small(tmp_path / "bench.json", "--vectors", str(garbage)))
    small = tmp_path / "small.npy"
    np.save(small, np.ones((20, 4)))  # every row would be a query: nothing left to index
    with pytest.raises(UsageError, match="held out"):
        run(_small(tmp_path / "bench.json", "--vectors", str(small)))
    ok = tmp_path / "ok.npy"
    np.save(ok, np.random.default_rng(0).standard_normal((50, 4)))
    with pytest.raises(UsageError, match="--dim 8"):
        run(_small(tmp_path / "bench.json", "--vectors", str(ok), "--dim", "8"))


def test_blas_threads_are_restored() -> None:
    default = blas_default_threads()
    with blas_threads(1) as threads:
        assert threads in (1, None)  # None: no OpenBLAS to set (another BLAS)
    assert blas_default_threads() == default
    with blas_threads(None) as threads:
        assert threads == default
