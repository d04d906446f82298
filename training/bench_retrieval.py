"""``ripple bench retrieval``: annoy's approximate nearest neighbours against exact search.

For each index size (default 10,000 and 100,000 items) the benchmark takes unit vectors of
the retriever's dimension (``--dim``, default 64), random by default or real embeddings
from ``--vectors FILE.npy``, and measures, per single query:

- ``annoy`` (angular metric), for every setting of a small grid of (trees, search_k):
  recall@10 (the share of the exact top 10 that annoy's top 10 holds, averaged over the
  queries), ``get_nns_by_vector`` latency p50 / p99 in milliseconds, and the build time
  (adding the items plus ``build``);
- ``exact``: one matrix-vector product and ``argpartition`` over all items (numpy), the
  reference for both recall and speed; timed with OpenBLAS limited to one thread (annoy
  answers a query on one thread) and again with numpy's default thread count, which on a
  small, busy machine can be much slower per query than one thread.

The reported setting of a size is the cheapest one (lowest p50) reaching the target
recall (``--target-recall``, default 0.95); when none does, the one of best recall. The
goal is recall@10 >= 0.95 at <= 1 ms per query; random uniform vectors in 64 dimensions
are a hard case for annoy (no clusters for its trees to split on), and at these sizes
exact search is often as fast or faster: the table says which, whatever it is.

With ``--vectors``, the rows are shuffled (``--seed``); the first ``--queries`` rows are
the queries and are never indexed, the rest are the items (a size beyond them is capped).
All vectors are scaled to unit length, so the exact top 10 by dot product is the top 10
by cosine, the order annoy's angular metric ranks by.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np

from ripple.models.errors import UsageError

__all__ = [
    "K",
    "add_arguments",
    "blas_default_threads",
    "blas_threads",
    "build_annoy",
    "exact_top_k",
    "load_vectors",
    "pick_setting",
    "random_unit_vectors",
    "recall_at_k",
    "run",
]

K: Final = 10  # neighbours asked for; the JSON's "recall@10"
DEFAULT_DIM: Final = 64
DEFAULT_SIZES: Final = "10000,100000"
DEFAULT_TREES: Final = "10,50,100,200"
DEFAULT_SEARCH_K: Final = "2000,5000,10000,20000,30000,50000"
TARGET_QUERY_MS: Final = 1.0
WARMUP_QUERIES: Final = 20  # untimed queries before each timed pass


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``ripple bench retrieval``."""
    p.add_argument("--json", dest="json_out", type=Path, required=True, metavar="OUT.json")
    p.add_argument(
        "--dim",
        type=int,
        default=None,
        help=f"vector dimension (default {DEFAULT_DIM}; with --vectors, the file's)",
    )
    p.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        metavar="N,N",
        help=f"index sizes, comma-separated (default {DEFAULT_SIZES})",
    )
    p.add_argument(
        "--queries",
        type=int,
        default=500,
        metavar="N",
        help="timed queries per setting (default 500)",
    )
    p.add_argument(
        "--trees",
        default=DEFAULT_TREES,
        metavar="N,N",
        help=f"annoy tree counts to try (default {DEFAULT_TREES})",
    )
    p.add_argument(
        "--search-k",
        default=DEFAULT_SEARCH_K,
        metavar="N,N",
        help=f"annoy search_k values to try; -1 is annoy's default (default {DEFAULT_SEARCH_K})",
    )
    p.add_argument(
        "--target-recall",
        type=float,
        default=0.95,
        help="recall@10 the reported setting must reach (default 0.95)",
    )
    p.add_argument(
        "--vectors",
        type=Path,
        default=None,
        metavar="FILE.npy",
        help="real embeddings (a 2-D .npy array, one row a vector) instead of random ones",
    )
    p.add_argument(
        "--jobs", type=int, default=-1, help="threads for annoy's build (default -1: every core)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


# -- data ----------------------------------------------------------------------------------


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, np.finfo(np.float32).tiny), dtype=np.float32)


def random_unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` vectors uniform on the unit sphere of dimension ``dim`` (float32)."""
    if dim < 1:
        raise UsageError(f"--dim must be at least 1 (got {dim})")
    return _unit_rows(rng.standard_normal((n, dim), dtype=np.float32))


def load_vectors(path: Path) -> tuple[np.ndarray, int]:
    """The rows of a 2-D numeric ``.npy`` file as unit float32 vectors, and how many
    all-zero rows were dropped (they have no direction to rank by); ``UsageError`` when the
    file is missing, unreadable or not such an array."""
    if not path.is_file():
        raise UsageError(f"--vectors {path}: no such file")
    try:
        raw = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--vectors {path}: not a readable .npy array ({exc})") from exc
    if not isinstance(raw, np.ndarray):
        raise UsageError(f"--vectors {path}: holds several arrays (.npz?), not one .npy array")
    if raw.ndim != 2 or raw.shape[0] < 1 or raw.shape[1] < 1:
        raise UsageError(
            f"--vectors {path}: shape {raw.shape}, expected a 2-D array (rows x dimension) "
            "with at least one row and one column"
        )
    if not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
        raise UsageError(f"--vectors {path}: dtype {raw.dtype}, expected numbers")
    x = raw.astype(np.float32)
    if not np.isfinite(x).all():
        raise UsageError(f"--vectors {path}: holds NaN or infinite values")
    nonzero = np.linalg.norm(x, axis=1) > 0
    return _unit_rows(x[nonzero]), int(x.shape[0] - nonzero.sum())


# -- search --------------------------------------------------------------------------------


def exact_top_k(items: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """Indices of the ``k`` rows of ``items`` of highest dot product with ``query``, best
    first: one matrix-vector product and a partial sort."""
    scores = items @ query
    n = scores.shape[0]
    if k >= n:
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(scores, n - k)[n - k :]
    return top[np.argsort(-scores[top], kind="stable")]


def build_annoy(items: np.ndarray, trees: int, seed: int, jobs: int = -1) -> tuple[Any, float]:
    """An in-memory angular ``AnnoyIndex`` of ``items`` with ``trees`` trees, and the
    seconds it took (adding the items plus ``build``)."""
    from annoy import AnnoyIndex

    index = AnnoyIndex(items.shape[1], "angular")
    index.set_seed(seed)
    t0 = time.perf_counter()
    for i, row in enumerate(items.tolist()):
        index.add_item(i, row)
    index.build(trees, n_jobs=jobs)
    return index, time.perf_counter() - t0


def recall_at_k(
    found: Sequence[Iterable[int]], truth: Sequence[Iterable[int]], k: int = K
) -> float:
    """Mean over queries of |found top k ∩ true top k| / (size of the true top k)."""
    if len(found) != len(truth) or not truth:
        raise ValueError("recall needs one result per query and at least one query")
    total = 0.0
    for got, want in zip(found, truth, strict=True):
        want_set = {int(i) for i in list(want)[:k]}
        total += len(want_set & {int(i) for i in list(got)[:k]}) / max(len(want_set), 1)
    return total / len(truth)


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 4)


# OpenBLAS's thread-count functions, by the names its builds export (numpy's wheels bundle
# scipy-openblas, whose symbols carry a prefix and a 64-bit-integer suffix).
_BLAS_GET = (
    "scipy_openblas_get_num_threads64_",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)
_BLAS_SET = (
    "scipy_openblas_set_num_threads64_",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def _openblas() -> tuple[Any, Any] | None:
    """(get, set) thread-count functions of the OpenBLAS numpy loaded; ``None`` when there is
    none to be found (another BLAS, or no ``/proc``): the timings then use its default."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower()})
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = next((getattr(lib, n) for n in _BLAS_GET if hasattr(lib, n)), None)
        set_ = next((getattr(lib, n) for n in _BLAS_SET if hasattr(lib, n)), None)
        if get is not None and set_ is not None:
            get.restype = ctypes.c_int
            return get, set_
    return None


def blas_default_threads() -> int | None:
    """Threads numpy's OpenBLAS uses by default; ``None`` when it cannot be told."""
    blas = _openblas()
    return int(blas[0]()) if blas is not None else None


@contextlib.contextmanager
def blas_threads(threads: int | None) -> Iterator[int | None]:
    """Run the block with OpenBLAS limited to ``threads`` (``None``: leave it as it is);
    yields the count in force, ``None`` when it cannot be set."""
    blas = _openblas() if threads is not None else None
    if blas is None:
        yield None if threads is not None else blas_default_threads()
        return
    get, set_ = blas
    before = int(get())
    set_(threads)
    try:
        yield int(get())
    finally:
        set_(before)


def _time_exact(items: np.ndarray, queries: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    for q in queries[:WARMUP_QUERIES]:
        exact_top_k(items, q)
    results: list[np.ndarray] = []
    times: list[float] = []
    clock = time.perf_counter_ns
    for q in queries:
        t0 = clock()
        top = exact_top_k(items, q)
        times.append((clock() - t0) / 1e6)
        results.append(top)
    return results, times


def _time_annoy(
    index: Any, queries: list[list[float]], search_k: int
) -> tuple[list[list[int]], list[float]]:
    for q in queries[:WARMUP_QUERIES]:
        index.get_nns_by_vector(q, K, search_k=search_k)
    results: list[list[int]] = []
    times: list[float] = []
    clock = time.perf_counter_ns
    for q in queries:
        t0 = clock()
        got = index.get_nns_by_vector(q, K, search_k=search_k)
        times.append((clock() - t0) / 1e6)
        results.append(got)
    return results, times


def pick_setting(grid: Sequence[dict[str, Any]], target_recall: float) -> dict[str, Any]:
    """The cheapest grid entry (lowest p50, then build time) with recall >= the target; when
    none reaches it, the one of best recall (then lowest p50)."""
    if not grid:
        raise ValueError("empty grid")
    good = [g for g in grid if g["recall@10"] >= target_recall]
    if good:
        return min(good, key=lambda g: (g["query_ms_p50"], g["build_s"]))
    return min(grid, key=lambda g: (-g["recall@10"], g["query_ms_p50"]))


# -- command -------------------------------------------------------------------------------


def _int_list(text: str, option: str, minimum: int, allow: Sequence[int] = ()) -> list[int]:
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated integers, got {text!r}") from None
    if not values:
        raise UsageError(f"{option}: no values given")
    for v in values:
        if v < minimum and v not in allow:
            raise UsageError(f"{option}: {v} is below {minimum}")
    return list(dict.fromkeys(values))


def _log(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(line, file=sys.stderr, flush=True)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _bench_size(
    args: argparse.Namespace,
    items: np.ndarray,
    queries: np.ndarray,
    trees_grid: list[int],
    search_k_grid: list[int],
) -> dict[str, Any]:
    n = items.shape[0]
    query_lists = queries.tolist()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed query is noise, not search cost
    try:
        # One BLAS thread, as annoy answers a query on one thread; then numpy's default.
        with blas_threads(1) as one:
            truth, exact_ms = _time_exact(items, queries)
        with blas_threads(None) as default:
            _, exact_default_ms = _time_exact(items, queries)
        _log(
            args,
            f"bench retrieval: n={n} exact ({one or 'default'} BLAS thread(s))"
            f" p50 {_pct(exact_ms, 50):.3f} ms p99 {_pct(exact_ms, 99):.3f} ms;"
            f" ({default or 'default'} threads) p50 {_pct(exact_default_ms, 50):.3f} ms"
            f" p99 {_pct(exact_default_ms, 99):.3f} ms",
        )
        grid: list[dict[str, Any]] = []
        for trees in trees_grid:
            index, build_s = build_annoy(items, trees, args.seed, args.jobs)
            try:
                for search_k in search_k_grid:
                    found, times = _time_annoy(index, query_lists, search_k)
                    entry = {
                        "trees": trees,
                        "search_k": search_k,
                        "recall@10": round(recall_at_k(found, truth), 4),
                        "query_ms_p50": _pct(times, 50),
                        "query_ms_p99": _pct(times, 99),
                        "build_s": round(build_s, 3),
                    }
                    grid.append(entry)
                    _log(
                        args,
                        f"bench retrieval: n={n} trees={trees} search_k={search_k}"
                        f" recall@10 {entry['recall@10']:.3f} p50 {entry['query_ms_p50']:.3f} ms"
                        f" p99 {entry['query_ms_p99']:.3f} ms build {build_s:.2f} s",
                    )
            finally:
                index.unload()
                del index
    finally:
        if gc_was_enabled:
            gc.enable()
    chosen = pick_setting(grid, args.target_recall)
    within = [g for g in grid if g["query_ms_p50"] <= TARGET_QUERY_MS]
    best_within = (
        max(within, key=lambda g: (g["recall@10"], -g["query_ms_p50"])) if within else None
    )
    exact_p50 = _pct(exact_ms, 50)
    return {
        "items": n,
        "recall@10": chosen["recall@10"],
        "query_ms_p50": chosen["query_ms_p50"],
        "query_ms_p99": chosen["query_ms_p99"],
        "build_s": chosen["build_s"],
        "trees": chosen["trees"],
        "search_k": chosen["search_k"],
        "meets_recall": chosen["recall@10"] >= args.target_recall,
        "meets_goal": chosen["recall@10"] >= args.target_recall
        and chosen["query_ms_p50"] <= TARGET_QUERY_MS,
        "exact_ms_p50": exact_p50,
        "exact_ms_p99": _pct(exact_ms, 99),
        "exact_blas_threads": one,
        "exact_default_threads_ms_p50": _pct(exact_default_ms, 50),
        "exact_default_threads_ms_p99": _pct(exact_default_ms, 99),
        "blas_default_threads": default,
        # Faster with either thread setting: exact search needs no index to build or keep.
        "exact_faster": min(exact_p50, _pct(exact_default_ms, 50)) < chosen["query_ms_p50"],
        f"best_recall_within_{TARGET_QUERY_MS:g}ms": best_within,
        "grid": grid,
    }


def _print_table(result: dict[str, Any]) -> None:
    print(
        f"annoy (angular) vs exact search, dim {result['dim']}, {result['queries']} single"
        f" queries, top {K}; source: {result['source']}"
    )
    header = f"{'items':>8} {'method':>8} {'trees':>6} {'search_k':>9} {'recall@10':>10} {'p50 ms':>8} {'p99 ms':>8} {'build s':>8}"
    for key, size in result["sizes"].items():
        print()
        print(header)
        for label, p50, p99 in (
            (f"exact/{size['exact_blas_threads'] or '?'}t", "exact_ms_p50", "exact_ms_p99"),
            (
                f"exact/{size['blas_default_threads'] or '?'}t",
                "exact_default_threads_ms_p50",
                "exact_default_threads_ms_p99",
            ),
        ):
            print(
                f"{key:>8} {label:>8} {'-':>6} {'-':>9} {1.0:>10.3f} {size[p50]:>8.3f}"
                f" {size[p99]:>8.3f} {'-':>8}"
            )
        for g in size["grid"]:
            mark = " <" if (g["trees"], g["search_k"]) == (size["trees"], size["search_k"]) else ""
            print(
                f"{key:>8} {'annoy':>8} {g['trees']:>6} {g['search_k']:>9} {g['recall@10']:>10.3f}"
                f" {g['query_ms_p50']:>8.3f} {g['query_ms_p99']:>8.3f} {g['build_s']:>8.2f}{mark}"
            )
    print()
    print(
        f"< reported setting: cheapest with recall@10 >= {result['target_recall']}"
        " (or best recall when none reaches it)"
    )
    for key, size in result["sizes"].items():
        verdict = "meets" if size["meets_goal"] else "misses"
        faster = "exact is faster" if size["exact_faster"] else "annoy is faster"
        print(
            f"{key:>8} items: trees {size['trees']}, search_k {size['search_k']}:"
            f" recall@10 {size['recall@10']:.3f}, p50 {size['query_ms_p50']:.3f} ms"
            f" ({verdict} recall >= {result['target_recall']} at <= {TARGET_QUERY_MS:g} ms);"
            f" exact p50 {size['exact_ms_p50']:.3f} ms"
            f" ({size['exact_blas_threads'] or 'default'} BLAS thread), {faster}"
        )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``ripple bench retrieval`` (see the module docstring)."""
    sizes = _int_list(args.sizes, "--sizes", 1)
    trees_grid = _int_list(args.trees, "--trees", 1)
    search_k_grid = _int_list(args.search_k, "--search-k", 1, allow=(-1,))
    if args.queries < 1:
        raise UsageError(f"--queries must be at least 1 (got {args.queries})")
    if not 0.0 < args.target_recall <= 1.0:
        raise UsageError(f"--target-recall must be in (0, 1] (got {args.target_recall})")
    if args.dim is not None and args.dim < 1:
        raise UsageError(f"--dim must be at least 1 (got {args.dim})")
    if args.jobs == 0 or args.jobs < -1:
        raise UsageError(f"--jobs must be -1 or at least 1 (got {args.jobs})")

    rng = np.random.default_rng(args.seed)
    dropped = 0
    if args.vectors is not None:
        vectors, dropped = load_vectors(args.vectors)
        dim = vectors.shape[1]
        if args.dim is not None and args.dim != dim:
            raise UsageError(f"--dim {args.dim} but the vectors in {args.vectors} have {dim}")
        if vectors.shape[0] <= args.queries:
            raise UsageError(
                f"--vectors {args.vectors}: {vectors.shape[0]} usable rows, need more than"
                f" --queries ({args.queries}): the queries are held out of the index"
            )
        vectors = vectors[rng.permutation(vectors.shape[0])]
        queries, pool = vectors[: args.queries], vectors[args.queries :]
        capped = [min(n, pool.shape[0]) for n in sizes]
        for n, c in zip(sizes, capped, strict=True):
            if c < n:
                _log(args, f"bench retrieval: size {n} capped to the {c} items in {args.vectors}")
        sizes = list(dict.fromkeys(capped))
        source = str(args.vectors)
    else:
        dim = DEFAULT_DIM if args.dim is None else args.dim
        pool = random_unit_vectors(rng, max(sizes), dim)
        queries = random_unit_vectors(rng, args.queries, dim)
        source = "random unit vectors (uniform on the sphere)"

    load_before = os.getloadavg()[0]
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    for n in sizes:
        results[str(n)] = _bench_size(args, pool[:n], queries, trees_grid, search_k_grid)
    result: dict[str, Any] = {
        "sizes": results,
        "dim": int(dim),
        "metric": "angular",
        "k": K,
        "queries": args.queries,
        "source": source,
        "dropped_zero_rows": dropped,
        "seed": args.seed,
        "target_recall": args.target_recall,
        "target_query_ms": TARGET_QUERY_MS,
        "trees_grid": trees_grid,
        "search_k_grid": search_k_grid,
        "build_jobs": args.jobs,
        "timing": (
            "per single query: annoy get_nns_by_vector(list, 10, search_k) and exact "
            "numpy matvec + argpartition + sort of the top 10, with one OpenBLAS thread"
            " (exact_ms_*) and with numpy's default (exact_default_threads_ms_*);"
            " build = add_item loop + build"
        ),
        "cpu_count": os.cpu_count(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "elapsed_s": round(time.perf_counter() - t_start, 1),
        "versions": {"annoy": _version("annoy"), "numpy": np.__version__},
    }
    _print_table(result)
    _write_json_atomic(args.json_out, result)
    return 0
