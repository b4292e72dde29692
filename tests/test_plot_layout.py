"""Every plot reads at a glance: axes labelled, titles and legends inside the
figure and off the data, a hue per scheme and shades per swept value, and
nothing left out without a word. Measured on the drawn figure (Agg renderer)."""
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import rgb_to_hsv, to_rgb

from fleecesim import plots
from fleecesim.sweep import load_latency, load_runs, load_timelines, run_sweep

BASE = {
    "disk": {"size": "64MiB"},
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 2000, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"scheme": "fleecing-push"},
    "run": {"seed": 5, "warmup": "0.3s", "tail": "0.1s", "max-time": "60s"},
}
RTTS = [0.5e-3, 4e-3]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    # a scheme without a fleecing image beside one with, at two target RTTs
    sweep = {"name": "layout", "base": BASE, "replications": 2,
             "grid": {"devices.target.rtt": ["0.5ms", "4ms"],
                      "backup.scheme": ["legacy-backup", "fleecing-push"]}}
    return run_sweep(sweep, out=tmp_path_factory.mktemp("res"), jobs=1, quiet=True)


def _drawn(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def assert_readable(fig):
    """Titles and legends inside the figure, legends over no axes, no two x
    tick labels of an axes overlapping, every axes labelled."""
    r = _drawn(fig)
    box = fig.bbox
    title = fig._suptitle or next(ax.title for ax in fig.axes if ax.get_title())
    assert "?" in title.get_text()
    texts = [title] + [ax.title for ax in fig.axes if ax.get_title()] + list(fig.legends)
    for t in texts:
        b = t.get_window_extent(r)
        assert b.x0 >= -1 and b.x1 <= box.x1 + 1 and b.y0 >= -1 and b.y1 <= box.y1 + 1, \
            (getattr(t, "get_text", lambda: "legend")(), b, box)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for leg in fig.legends + [ax.get_legend() for ax in axes if ax.get_legend()]:
        lb = leg.get_window_extent(r)
        for ax in axes:
            assert not lb.overlaps(ax.get_window_extent(r)), "legend over the data"
    for ax in axes:
        assert ax.get_ylabel()
        ticks = sorted((t.get_window_extent(r) for t in ax.get_xticklabels()
                        if t.get_visible() and t.get_text()), key=lambda b: b.x0)
        assert all(a.x1 <= b.x0 for a, b in zip(ticks, ticks[1:])), "x tick labels overlap"
    assert any(ax.get_xlabel() for ax in axes)


def _hue(c):
    return round(float(rgb_to_hsv(np.array(to_rgb(c)))[0]), 3)


def _lightness(c):
    return float(np.mean(to_rgb(c)))


def test_sweep_cdf_has_a_hue_per_scheme_and_shades_per_value(sweep_dir):
    fig = plots.latency_cdf(load_latency(sweep_dir))
    ax = fig.axes[0]
    during = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    assert len(during) == 4  # 2 schemes x 2 RTTs
    assert len({ln.get_color() for ln in during}) == 4  # no two alike
    assert len({_hue(ln.get_color()) for ln in during}) == 2  # one hue per scheme
    text = [t.get_text() for t in fig.legends[0].get_texts()]
    for scheme in ("legacy-backup", "fleecing-push"):
        lines = {t: h for t, h in zip(text, fig.legends[0].legend_handles) if t.startswith(scheme)}
        assert list(lines) == [f"{scheme}, 500µs", f"{scheme}, 4ms"]
        light = [_lightness(h.get_color()) for h in lines.values()]
        assert light[0] > light[1]  # light to dark as the RTT grows
    assert "backup scheme (colour)" in fig.legends[0].get_title().get_text()
    assert_readable(fig)


def test_occupancy_says_what_it_leaves_out_and_draws_every_replication(sweep_dir):
    tl = load_timelines(sweep_dir)
    fig = plots.occupancy(tl)
    note = fig.axes[0].get_title()
    assert "all 2 replications drawn" in note
    assert "no fleecing image: legacy-backup" in note
    # one line per fleecing-push run: 2 RTTs x 2 replications, per panel
    push_runs = tl.loc[tl["backup.scheme"] == "fleecing-push", "run_id"].nunique()
    assert push_runs == 4
    assert all(len(ax.get_lines()) == push_runs for ax in fig.axes)
    assert_readable(fig)
    one = plots.occupancy(tl, replication=1)
    assert "replication 1 of 2 drawn" in one.axes[0].get_title()
    assert all(len(ax.get_lines()) == 2 for ax in one.axes)


def test_bars_are_wide_enough_for_their_title_and_labels(sweep_dir):
    runs = load_runs(sweep_dir)
    fig = plots.policy_bars(runs, ["write_p99_s", "backup_duration_s"])
    assert fig.get_size_inches()[0] * 120 >= 960  # px at the saved dpi
    ax = fig.axes[0]
    # grouped: a tick per RTT, a hue per scheme, the scheme in the legend
    assert [t.get_text() for t in ax.get_xticklabels()] == ["500µs", "4ms"]
    assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
    assert len({p.get_facecolor() for p in ax.patches}) == 2
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["legacy-backup",
                                                                  "fleecing-push"]
    assert_readable(fig)


def test_bars_with_many_long_names_do_not_overlap():
    names = ["ascending", "ram-first", "zero-last", "disk-cached-last",
             "disk-cached-first", "hot-first", "a-much-longer-policy-name-here"]
    runs = pd.DataFrame([{"variant": v, "replication": r, "point": 0,
                          "spill_bytes": (i + 1) * 2**20 + r, "cbw_count": 10 * i + r}
                         for i, v in enumerate(names) for r in range(3)])
    runs.attrs["axes"] = []
    fig = plots.policy_bars(runs, ["spill_bytes", "cbw_count"])
    assert_readable(fig)


def test_metric_legend_is_under_the_axes(sweep_dir):
    fig = plots.metric_vs_param(load_runs(sweep_dir), "devices.target.rtt", "write_p99_s")
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1
    assert_readable(fig)


def test_attribution_is_readable(sweep_dir):
    assert_readable(plots.attribution_bars(load_runs(sweep_dir)))


def test_fit_width_widens_a_figure_whose_title_does_not_fit():
    from matplotlib.figure import Figure
    fig = Figure(figsize=(3, 3), layout="constrained")
    fig.subplots().plot([0, 1], [0, 1])
    fig.suptitle("Which setting costs least? " * 4)
    r = _drawn(fig)
    assert fig._suptitle.get_window_extent(r).x0 < 0  # cut off before
    plots.fit_width(fig)
    r = _drawn(fig)
    b = fig._suptitle.get_window_extent(r)
    assert b.x0 >= 0 and b.x1 <= fig.bbox.x1 and fig.get_size_inches()[0] > 3


def test_saved_files_are_the_same_bytes_each_time(sweep_dir, tmp_path):
    # no creation date or random ids: a plot of the same results is byte-identical
    lat = load_latency(sweep_dir)
    out = []
    for i in range(2):
        paths = plots.save(plots.latency_cdf(lat), tmp_path / f"cdf{i}", formats=("png", "svg", "pdf"))
        out.append([p.read_bytes() for p in paths])
    assert out[0] == out[1]


def test_a_slice_is_named_in_the_title(sweep_dir, tmp_path, monkeypatch):
    from fleecesim.cli import main
    seen = []
    real = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, stem, formats: seen.append(fig) or
                        real(fig, stem, formats=formats))
    assert main(["plot", str(sweep_dir), "--kind", "bars", "--metric", "write_p99_s",
                 "--where", "devices.target.rtt=4ms", "--out", str(tmp_path / "b"),
                 "--format", "png", "--quiet"]) == 0
    title = seen[0]._suptitle.get_text()
    assert title.endswith("(only runs with devices.target.rtt=4ms)")
    assert_readable(seen[0])
