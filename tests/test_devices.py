"""The device models against closed forms of queueing theory."""
import numpy as np
import pytest
import simpy

from fleecesim.devices import HDD, Device, RemoteDevice
from fleecesim.metrics import Level


def test_lone_request_takes_latency_plus_transfer():
    d = Device("d", latency=100e-6, bandwidth=500 * 2**20, slots=8)
    end = d.submit(1.0, 0, 2**20)
    assert end - 1.0 == pytest.approx(100e-6 + 2**20 / (500 * 2**20))


def test_saturated_device_delivers_its_bandwidth():
    bw = 200 * 2**20
    d = Device("d", latency=1e-3, bandwidth=bw, slots=32)
    n, size = 5000, 256 * 1024
    end = max(d.submit(0.0, i * size, size) for i in range(n))
    assert n * size / end == pytest.approx(bw, rel=0.01)


def test_remote_is_link_then_backend():
    link = Device("l", latency=2e-3, bandwidth=100 * 2**20, slots=16)
    be = Device("b", latency=1e-4, bandwidth=1e9, slots=4)
    r = RemoteDevice("r", link, be)
    size = 65536
    assert r.submit(0.0, 0, size) == pytest.approx(2e-3 + size / (100 * 2**20) + 1e-4 + size / 1e9)


def _remote_slow_backend(qd=2):
    """qd request slots, a 0.1 ms RTT link and a backend that takes 10 ms per
    request but could serve 32 at once: the client's slots, not the backend,
    must bound what is outstanding. Bandwidths are so high that transfers take
    picoseconds, so every request's service is the same D."""
    link = Device("l", latency=1e-4, bandwidth=1e15, slots=qd)
    be = Device("b", latency=10e-3, bandwidth=1e15, slots=32)
    return RemoteDevice("r", link, be), 1e-4 + 10e-3


def test_remote_slot_is_held_until_the_backend_served_the_request():
    # block/nbd.c: a request keeps one of MAX_NBD_REQUESTS slots until its reply
    # is read, so with queue-depth 2 a burst completes two at a time, D apart.
    r, D = _remote_slow_backend(qd=2)
    ends = sorted(r.submit(0.0, i * 4096, 4096) for i in range(40))
    assert ends == pytest.approx([(k // 2 + 1) * D for k in range(40)], rel=1e-6)
    assert 40 / ends[-1] == pytest.approx(2 / D, rel=1e-6)  # Little's law: N / (RTT + S)


def test_remote_never_more_than_queue_depth_outstanding():
    # Poisson arrivals far above capacity; every request's service is D (nothing
    # else queues: link and backend have room), so it was outstanding during
    # [end - D, end). Count the overlaps (intervals shrunk by 1 ns against float
    # noise) and check each request started after it arrived.
    r, D = _remote_slow_backend(qd=2)
    arr = np.cumsum(np.random.default_rng(4).exponential(1e-3, 500))
    ends = np.array([r.submit(float(t), 0, 4096) for t in arr])
    starts = ends - D
    assert (starts >= arr - 1e-9).all()
    ev = sorted([(s + 1e-9, 1) for s in starts] + [(e, -1) for e in ends])
    k = peak = 0
    for _t, d in ev:
        k += d
        peak = max(peak, k)
    assert peak == 2


def test_hdd_sequential_skips_seek():
    h = HDD("h", latency=0.0, bandwidth=100 * 2**20, seek=8e-3, rpm=7200)
    xfer = 65536 / (100 * 2**20)
    t1 = h.submit(0.0, 0, 65536)
    assert t1 == pytest.approx(8e-3 + 30 / 7200 + xfer)
    t2 = h.submit(t1, 65536, 65536)  # continues the previous request
    assert t2 - t1 == pytest.approx(xfer)
    t3 = h.submit(t2, 10 * 2**30, 65536)  # elsewhere: seek + half a rotation
    assert t3 - t2 == pytest.approx(8e-3 + 30 / 7200 + xfer)


def _poisson_run(device, lam, sizes, seed=3):
    """Drive a device with Poisson arrivals in SimPy; track the number in system."""
    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.exponential(1 / lam, len(sizes)))
    inside = Level(env, "in-system")
    lat = np.empty(len(sizes))

    def gen():
        for i, (t, s) in enumerate(zip(arr.tolist(), sizes.tolist())):
            yield env.timeout(t - env.now)
            end = device.submit(env.now, 0, int(s))
            lat[i] = end - env.now
            inside.add(1)
            env.timeout(end - env.now).callbacks.append(lambda _e: inside.add(-1))

    env.process(gen())
    env.run()
    return arr, lat, inside


def test_md1_matches_pollaczek_khinchine():
    size, bw, lat0 = 65536, 100 * 2**20, 0.2e-3
    S = lat0 + size / bw
    rho = 0.6
    lam = rho / S
    n = 200_000
    _, lat, _ = _poisson_run(Device("d", lat0, bw, 1), lam, np.full(n, size))
    W = S + rho * S / (2 * (1 - rho))  # P-K mean response time, deterministic service
    assert lat.mean() == pytest.approx(W, rel=0.03)


def test_mm1_mean_response():
    bw = 100 * 2**20
    mean_size = 65536
    mu = bw / mean_size
    lam = 0.5 * mu
    n = 200_000
    sizes = np.random.default_rng(9).exponential(mean_size, n)
    _, lat, _ = _poisson_run(Device("d", 0.0, bw, 1), lam, sizes)
    assert lat.mean() == pytest.approx(1 / (mu - lam), rel=0.03)


def test_littles_law_on_multi_slot_device():
    d = Device("d", latency=0.5e-3, bandwidth=400 * 2**20, slots=4)
    n = 100_000
    sizes = np.random.default_rng(5).choice([4096, 65536, 262144], n)
    lam = 2500.0
    arr, lat, inside = _poisson_run(d, lam, sizes)
    T = float((arr + lat).max())
    L = inside.mean(0.0, T)
    lam_hat = n / T
    assert L == pytest.approx(lam_hat * lat.mean(), rel=0.02)


def test_ps_request_waits_for_committed_transfers_like_fifo():
    # 32 MiB of backup reads submitted first hold the pipe from 80us on: their
    # completions are returned, so a 4 KiB read ready at the same 80us cannot
    # end before they have moved (the interval [80us, end] would hold more than
    # bandwidth x its length). Under ps as under fifo it ends after them.
    bw = 2 * 2**30
    ends = []
    for sharing in ("fifo", "ps"):
        d = Device("d", 80e-6, bw, slots=64, sharing=sharing)
        for i in range(32):
            d.submit(0.0, i * 2**20, 2**20)
        ends.append(d.submit(0.0, 0, 4096))
    assert ends[0] == ends[1] == pytest.approx(80e-6 + (32 * 2**20 + 4096) / bw)


def _read_then_write(sharing, wlen):
    """A 1 MiB read (80 us access) then a write (20 us access) submitted at 0."""
    bw = 2 * 2**30
    d = Device("d", 80e-6, bw, slots=8, sharing=sharing, write_latency=20e-6)
    return d.submit(0.0, 0, 2**20), d.submit(0.0, 0, wlen, True), bw


def test_ps_write_ready_first_moves_in_the_gap_before_a_committed_read():
    # The pipe is free from 20 us (the write is ready) to 80 us (the read's
    # transfer starts): a 64 KiB write (30.5 us) moves there and completes
    # before the read, out of submission order; fifo keeps it behind the read.
    r, w, bw = _read_then_write("ps", 65536)
    assert r == pytest.approx(80e-6 + 2**20 / bw)
    assert w == pytest.approx(20e-6 + 65536 / bw)
    r, w, bw = _read_then_write("fifo", 65536)
    assert w == pytest.approx(80e-6 + (2**20 + 65536) / bw)


def test_ps_transfer_is_interrupted_by_a_committed_one_and_continues_after_it():
    # A 256 KiB write (122 us) fills the 60 us gap, waits out the read's
    # 1 MiB, then moves the rest: it ends 62 us after the read.
    r, w, bw = _read_then_write("ps", 256 * 1024)
    assert r == pytest.approx(80e-6 + 2**20 / bw)
    assert w == pytest.approx(r + 256 * 1024 / bw - 60e-6)


def test_ps_saturated_delivers_bandwidth():
    bw = 200 * 2**20
    d = Device("d", latency=1e-3, bandwidth=bw, slots=32, sharing="ps")
    n, size = 5000, 256 * 1024
    end = max(d.submit(0.0, i * size, size) for i in range(n))
    assert n * size / end == pytest.approx(bw, rel=0.02)


def test_ps_littles_law():
    d = Device("d", latency=0.5e-3, bandwidth=400 * 2**20, slots=4, sharing="ps")
    n = 100_000
    sizes = np.random.default_rng(5).choice([4096, 65536, 262144], n)
    arr, lat, inside = _poisson_run(d, 2500.0, sizes)
    T = float((arr + lat).max())
    assert inside.mean(0.0, T) == pytest.approx(n / T * lat.mean(), rel=0.02)
