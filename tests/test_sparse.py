"""fleecesim.sparse: a SparseArray equals a dense numpy array under any sequence
of the operations the model uses (hypothesis), page forms included."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fleecesim import sparse
from fleecesim.bitmap import widen
from fleecesim.sparse import PAGE, SparseArray

N = 3 * PAGE + 123  # a short last page
DTYPES = [np.bool_, np.uint8, np.uint32, np.int8]


def ranges(n=N):
    return st.tuples(st.integers(0, n), st.integers(0, 2 * PAGE + 50)).map(
        lambda t: (t[0], min(n, t[0] + t[1])))


def value(dtype):
    if dtype == np.bool_:
        return st.booleans()
    info = np.iinfo(dtype)
    return st.integers(int(info.min), int(info.max))


def short(n=N):
    """A range of up to 40 entries (mostly inside one page), near a few hot spots
    so that writes meet earlier ones."""
    return st.tuples(st.sampled_from([0, 90, PAGE - 20, PAGE + 7, 2 * PAGE - 3, n - 41]),
                     st.integers(0, 40), st.integers(0, 40)).map(
        lambda t: (t[0] + t[1], min(n, t[0] + t[1] + t[2])))


def ops(dtype):
    v = value(dtype)
    return st.lists(st.one_of(
        st.tuples(st.just("set1"), st.integers(0, N - 1), v),
        st.tuples(st.just("setr"), ranges(), v),
        st.tuples(st.just("seta"), ranges(), st.integers(0, 2**31)),
        st.tuples(st.just("inc"), ranges(), st.just(1)),
        st.tuples(st.just("add"), ranges(), st.integers(0, 3)),
        st.tuples(st.just("add"), st.tuples(st.integers(0, N - 40), st.integers(0, 40)).map(
            lambda t: (t[0], t[0] + t[1])), st.integers(0, 300)),  # a copy's few clusters
        st.tuples(st.just("fancy"), st.lists(st.integers(0, N - 1), max_size=20), v),
        st.tuples(st.just("scatter"), st.integers(0, 2**31), st.integers(1, 400)),
        st.tuples(st.just("fork"), st.just(0), st.just(0)),  # a copy; ops go to either
        # short ranges inside a page (the hot paths): a value, an array, += 1
        st.tuples(st.just("short"), short(), v),
        st.tuples(st.just("shorta"), short(), st.integers(0, 2**31)),
        st.tuples(st.just("shortinc"), short(), st.just(1)),
        st.tuples(st.just("runs"), st.lists(short(), max_size=30), v),
    ), max_size=40)


def apply(op, dense, sp, dtype):
    kind, a, b = op
    if kind == "set1":
        dense[a] = b
        sp[a] = b
    elif kind == "setr":
        dense[a[0]:a[1]] = b
        sp[a[0]:a[1]] = b
    elif kind == "seta":  # an array of few distinct values (as copies carry)
        vals = np.random.default_rng(b).integers(0, 3, a[1] - a[0]).astype(dtype)
        dense[a[0]:a[1]] = vals
        sp[a[0]:a[1]] = vals
    elif kind in ("inc", "add"):  # (for bool, numpy's addition is an or)
        dense[a[0]:a[1]] += np.array(b).astype(dtype)
        if kind == "inc":
            sp[a[0]:a[1]] += np.array(b).astype(dtype)
        else:
            sp.add(a[0], a[1], b)
    elif kind == "short":
        dense[a[0]:a[1]] = b
        sp[a[0]:a[1]] = b
    elif kind == "shorta":
        vals = np.random.default_rng(b).integers(0, 3, a[1] - a[0]).astype(dtype)
        dense[a[0]:a[1]] = vals
        sp[a[0]:a[1]] = vals
    elif kind == "shortinc":
        if dtype == np.bool_:
            return
        with np.errstate(over="ignore"):
            dense[a[0]:a[1]] += dtype(1)
        sp[a[0]:a[1]] += np.array(1).astype(dtype)
        if a[1] - a[0] == 1:  # a[c] += 1 on Python scalars, as a guest write's one cluster
            c = a[0]
            dense[c] = np.array(int(dense[c]) + 1).astype(dtype)  # wraps as numpy does
            sp[c] += 1
    elif kind == "runs":
        for lo, hi in a:
            dense[lo:hi] = b
        sp.set_runs([lo for lo, _ in a], [hi for _, hi in a], b)
    elif kind == "fancy":
        idx = np.array(sorted(set(a)), dtype=np.int64)
        dense[idx] = b
        sp[idx] = b
    elif kind == "scatter":  # many single writes: exception pages turning dense
        rng = np.random.default_rng(a)
        for c in rng.integers(0, N, b).tolist():
            with np.errstate(over="ignore"):
                x = dense[c] + dtype(1) if dtype != np.bool_ else not dense[c]
            dense[c] = x
            sp[c] = x


def check(dense, sp, rng):
    assert np.array_equal(sp.to_dense(), dense)
    assert sp.count() == int(np.count_nonzero(dense))
    for _ in range(5):
        lo = int(rng.integers(0, N))
        hi = int(rng.integers(lo, N + 1))
        assert np.array_equal(sp[lo:hi], dense[lo:hi])
        assert sp.count(lo, hi) == int(np.count_nonzero(dense[lo:hi]))
        for nz in (True, False):
            want = np.flatnonzero(dense[lo:hi] != 0 if nz else dense[lo:hi] == 0)
            assert sp.first(lo, hi, nz) == (lo + int(want[0]) if want.size else -1)
        c = int(rng.integers(0, N))
        assert sp[c] == dense[c]
        v = dense[c]
        assert np.array_equal(sp.nonfill(lo, hi, v), lo + np.flatnonzero(dense[lo:hi] != v))
    cp = sp.copy()
    assert np.array_equal(cp.to_dense(), dense)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_equals_dense(dtype):
    @settings(max_examples=60, deadline=None)
    @given(ops(dtype), st.sampled_from([0, 1]))
    def run(seq, fill):
        pairs = [(np.full(N, fill, dtype=dtype), SparseArray(N, dtype, fill))]
        rng = np.random.default_rng(len(seq))
        for i, op in enumerate(seq):
            if op[0] == "fork":  # copy-on-write pages: neither side may see the other's writes
                d, sp = pairs[i % len(pairs)]
                pairs.append((d.copy(), sp.copy()))
                continue
            apply(op, *pairs[i % len(pairs)], dtype)
        for dense, sp in pairs:
            check(dense, sp, rng)
    run()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=N // 64 + 1), st.sampled_from([1, 2, 8, 64]),
       st.lists(st.tuples(st.integers(0, N - 1), st.booleans()), max_size=30))
def test_zero_map_pages_and_widen(ext, per, writes):
    """The t0 zero map built as coarse pages equals run.initial_zero_map's dense
    layout, stays equal under writes, and widens as bitmap.widen does."""
    n = min(N, len(ext) * per)
    ext = np.array(ext, dtype=bool)[:-(-n // per)]
    dense = np.repeat(ext, per)[:n].copy()
    sp = sparse.zero_map_from_extents(n, per, ext)
    for c, v in writes:
        if c < n:
            dense[c] = v
            sp[c] = v
    assert np.array_equal(sp.to_dense(), dense)
    for k in (1, 4, 64):
        for all_ in (False, True):
            assert np.array_equal(sp.widen(k, all_).to_dense(), widen(dense, k, all_))
    runs = list(sp.runs(0, n))
    back = np.zeros(n, dtype=bool)
    for s, e in runs:
        back[s:e] = True
    assert np.array_equal(back, dense)


def test_initial_zero_map_same_draws_both_ways():
    """The sparse layout draws its extents in pieces: the same bits as one draw."""
    from fleecesim.run import initial_zero_map
    from tests.conftest import small
    cfg = small(**{"disk.size": "80GiB", "disk.allocated": 0.3,
                   "disk.allocation-granularity": "64KiB"})  # 1.3 M extents: two pieces
    n = cfg.disk.size // cfg.unit
    dense = initial_zero_map(cfg, n, cfg.unit)
    assert np.array_equal(initial_zero_map(cfg, n, cfg.unit, True).to_dense(), dense)


def test_segment_and_differs():
    rng = np.random.default_rng(3)
    dense = rng.integers(0, 2, N).astype(np.uint32)
    dense[PAGE:2 * PAGE] = 0
    src = SparseArray.from_dense(dense)
    seg = src.segment(100, N - 7)
    src[500] = 99  # the segment is a copy, not a view
    idx = np.array([200, PAGE + 5, 2 * PAGE + 9])
    seg.put(idx, np.array([7, 8, 9]))
    want = dense[100:N - 7].copy()
    want[idx - 100] = [7, 8, 9]
    assert np.array_equal(seg.to_dense(), want)
    dst = SparseArray(N, np.uint32, 0xFFFFFFFF)
    dst[100:N - 7] = seg
    full = np.full(N, 0xFFFFFFFF, dtype=np.uint32)
    full[100:N - 7] = want
    assert np.array_equal(dst.to_dense(), full)
    d = sparse.differs(dst, src)
    assert np.array_equal(d.to_dense(), full != src.to_dense())


def test_memory_follows_touch():
    """2^30 entries untouched cost the page lists only; scattered writes cost an
    exception each, not a page; a front leaves uniform pages behind."""
    n = 1 << 30
    a = SparseArray(n, np.uint32, 0)
    before = a.nbytes()
    assert before < 12 * 2**20
    rng = np.random.default_rng(1)
    for c in rng.integers(0, n, 10_000).tolist():
        a[c] += 1
    assert a.nbytes() - before < 10_000 * 200
    b = SparseArray(n, bool, True)
    for c in range(0, 3 * PAGE, 16):  # the job clearing bits in ascending chunks
        b[c:c + 16] = False
    assert b.pages[0] is None and b.pages[1] is None and b.uval[0] is False
    assert b.count(0, 3 * PAGE) == 0 and b.first(0) == 3 * PAGE


def test_helpers_on_both():
    dense = np.zeros(N, dtype=bool)
    dense[[5, PAGE + 3, N - 1]] = True
    sp = SparseArray.from_dense(dense)
    for a in (dense, sp):
        assert sparse.count(a, 0, N) == 3
        assert sparse.first(a, 6) == PAGE + 3
        assert sparse.first(a, 0, nz=False) == 0
        assert sparse.first(a, N - 1, N, nz=False) == -1
    with pytest.raises(IndexError):
        sp[dense]
    assert sparse.state_mode("auto", 10) == "dense"
    assert sparse.state_mode("auto", 1 << 30) == "sparse"
    assert sparse.state_mode("sparse", 10) == "sparse"


def test_oracle_pages_equals_blocks():
    from fleecesim.run import oracle_counts
    rng = np.random.default_rng(5)
    n = 5 * PAGE + 7
    t0 = np.zeros(n, np.uint32)
    t0[rng.integers(0, n, 50)] = 3
    tg = np.full(n, 0xFFFFFFFF, np.uint32)
    tg[:3 * PAGE] = t0[:3 * PAGE]
    tg[rng.integers(0, n, 20)] = 9
    cp = (tg != 0xFFFFFFFF).astype(np.uint8)
    cp[rng.integers(0, n, 10)] = 2
    m = np.ones(n, bool)
    m[4 * PAGE:] = False
    m[rng.integers(0, n, 30)] = False
    want = oracle_counts(tg, cp, t0, m)
    got = oracle_counts(*(SparseArray.from_dense(x) for x in (tg, cp, t0, m)))
    assert got == want and want[0] > 0 and all(want)

    def scattered(x, fill):  # the same values as exception pages (written one by one)
        sp = SparseArray(n, x.dtype, fill)
        for c in np.flatnonzero(x != fill).tolist():
            sp[c] = x[c]
        return sp
    arrays = [scattered(tg, 0xFFFFFFFF), scattered(cp, 0), scattered(t0, 0), scattered(m, True)]
    assert any(type(pg) is dict for a in arrays for pg in a.pages)
    assert oracle_counts(*arrays) == want


# ---------------------------------------------------------------- whole runs
def _scale_run(size, data=64 * 2**30, iops=0, **extra):
    from fleecesim.config import load_config
    from fleecesim.run import simulate
    from pathlib import Path
    ref = Path(__file__).resolve().parents[1] / "configs" / "fleecing-vs-legacy.yaml"
    sets = ["backup.scheme=fleecing-push", f"disk.size={size}", f"workload.iops={iops}",
            "run.max-time=100000s", f"disk.allocated={data / size}"]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return simulate(load_config(ref, sets)).summary


def _check_full(s, size):
    """Invariants of a full backup: every byte went as data or as write-zeroes,
    the target holds the t0 image, the zeroes cost one request per chunk."""
    assert s.get("error") is None, s.get("error")
    assert s["oracle_ok"] and s["clusters_to_copy"] == s["clusters"] == size // 2**16
    assert s["target_zero_bytes"] + s["target_write_bytes"] == size
    assert s["clusters_copied_twice"] == 0 and s["clusters_copied_outside_mask"] == 0
    # NBD write-zeroes: 16 slots, each held an RTT (2 ms) + the backend's 0.2 ms
    zero_reqs = s["target_zero_bytes"] / 2**20
    assert s["backup_duration_s"] >= zero_reqs / 16 * 2.2e-3


def test_4tib_sparse_full_backup():
    """4 TiB holding 16 GiB: sparse state on auto, long zero runs in bulks."""
    size = 4 * 2**40
    s = _scale_run(size, data=16 * 2**30)
    _check_full(s, size)


@pytest.mark.slow
def test_64tib_sparse_full_backup():
    """P3's disk: 64 TiB holding 64 GiB (idle guest: ~20 s; the bench runs the guest)."""
    size = 64 * 2**40
    s = _scale_run(size)
    _check_full(s, size)
    assert 9000 < s["backup_duration_s"] < 9600  # 64 Mi write-zeroes at 16 per 2.2 ms


@pytest.mark.slow
def test_64tib_incremental_with_guest():
    """P3's incremental: 64 GiB dirty on 64 TiB, the reference guest at 1k IOPS."""
    s = _scale_run(64 * 2**40, data=0.9 * 64 * 2**40, iops=1000, **{
        "backup.sync": "incremental", "backup.incremental.dirty": 2**-10})
    assert s.get("error") is None and s["oracle_ok"]
    assert s["clusters_to_copy"] == 2**20
    assert s["target_zero_bytes"] + s["target_write_bytes"] == 64 * 2**30


# ---------------------------------------------------------------- dense == sparse
SCENARIOS = [
    {},
    {"backup.scheme": "backup"},
    {"backup.scheme": "legacy-backup"},
    {"backup.scheme": "fleecing-pull", "backup.client.discard": True},
    {"backup.scheme": "fleecing-push-2018"},
    {"backup.sync": "incremental", "backup.incremental.granularity": "256KiB",
     "backup.target.cluster-size": "128KiB"},
    {"backup.scheme": "backup", "backup.sync": "none", "backup.window": "1s"},
    {"backup.cache.ram.size": "4MiB", "backup.cache.cor": True,
     "backup.cache.serve-reads-from-ram": True,
     "backup.cache.flush": {"high": 0.75, "low": 0.25}, "backup.discard-source": True,
     "backup.lazy-discard": True, "backup.order": "ram-first",
     "workload.mix": {"read": 0.5, "write": 0.45, "discard": 0.05}},
    {"backup.order": "zero-last", "disk.allocated": 0.6},
    {"backup.order": "hot-first", "backup.discard-source": True},
    {"backup.order": "disk-cached-first", "backup.cache.cluster-size": "256KiB"},
]


@pytest.mark.parametrize("ov", SCENARIOS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
                         or "fleecing-push")
def test_summaries_equal_dense_and_sparse(ov):
    """The same run on numpy arrays and on sparse pages: every summary value equal."""
    import json
    from fleecesim.run import simulate
    from tests.conftest import small
    base = {"disk.size": "128MiB", "disk.allocated": 0.8, "disk.allocation-granularity": "1MiB",
            "workload.iops": 1500}
    out = []
    for state in ("dense", "sparse"):
        s = simulate(small(**{**base, **ov, "run.state": state})).summary
        assert s.get("error") is None, s.get("traceback")
        s.pop("wall_time_s")
        s["config"]["run"].pop("state")
        out.append(json.dumps(s, sort_keys=True, default=str))
    assert out[0] == out[1]


def test_bool_exceptions_are_never_the_page_value():
    """A bool page's exceptions are all ``not uval`` (short slices of it read
    only which keys are present): true after an add over whole pages too."""
    a = SparseArray(3 * PAGE, bool, False)
    d = np.zeros(3 * PAGE, bool)
    for c in (5, PAGE + 9, PAGE + 10):
        a[c] = d[c] = True
    a.add(0, 3 * PAGE, True)
    d += True
    assert all(pg is None or all(v != a.uval[p] for v in pg.values())
               for p, pg in enumerate(a.pages) if type(pg) is dict or pg is None)
    for lo in (0, 3, PAGE + 8):
        assert np.array_equal(a[lo:lo + 16], d[lo:lo + 16])


@pytest.mark.parametrize("twist", ["none", "copied-twice", "outside", "unasked", "t0-written"])
def test_oracle_pages_incremental_layout(twist):
    """The layout an incremental backup leaves (mask, copies and target with the
    same exception keys per page: oracle_pages' fast path) and each way it can
    go wrong: the same counts as the dense oracle."""
    from fleecesim.run import oracle_counts
    rng = np.random.default_rng(11)
    n = 6 * PAGE + 5
    asked = np.unique(rng.integers(0, n, 300))
    t0 = np.zeros(n, np.uint32)
    if twist == "t0-written":
        t0[asked[::7]] = 4
    m = np.zeros(n, bool)
    m[asked] = True
    tg = np.full(n, 0xFFFFFFFF, np.uint32)
    tg[asked] = t0[asked]
    tg[asked[::9]] = 5  # copies of the wrong content
    cp = np.zeros(n, np.uint8)
    cp[asked] = 1
    if twist == "copied-twice":
        cp[asked[::5]] = 2
    elif twist == "outside":
        extra = np.setdiff1d(np.arange(0, n, 97), asked)
        cp[extra] = 1
        tg[extra] = t0[extra]
    elif twist == "unasked":
        m[asked[::4]] = False  # copied, though not in the mask
    want = oracle_counts(tg, cp, t0, m)

    def scattered(x, fill):
        sp = SparseArray(n, x.dtype, fill)
        for c in np.flatnonzero(x != fill).tolist():
            sp[c] = x[c]
        return sp
    arrays = [scattered(tg, 0xFFFFFFFF), scattered(cp, 0), scattered(t0, 0), scattered(m, False)]
    assert sum(type(pg) is dict for pg in arrays[0].pages) >= 6  # the fast path's pages
    assert oracle_counts(*arrays) == want
    assert want[0] > 0 and (twist != "copied-twice" or want[1] > 0)
    assert twist not in ("outside", "unasked") or want[2] > 0
