"""Plot functions return labelled Figures; `fleecesim plot` writes PNG and SVG."""
import pytest
from matplotlib.figure import Figure

from fleecesim import plots
from fleecesim.cli import main
from fleecesim.sweep import load_latency, load_runs, load_timelines, run_sweep

BASE = {
    "disk": {"size": "64MiB"},
    "devices": {"local": {"preset": "nvme"}, "target": {"preset": "nbd-1gbe"}},
    "workload": {"iops": 2000, "mix": {"read": 0.5, "write": 0.5}},
    "backup": {"scheme": ["fleecing-pull", "fleecing-push"],
               "cache": {"ram": {"size": "4MiB"}}},
    "run": {"seed": 5, "warmup": "0.3s", "tail": "0.1s", "max-time": "60s"},
}


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    sweep = {"name": "plots", "base": BASE, "replications": 2,
             "grid": {"backup.max-workers": [1, 4, 16]}}
    return run_sweep(sweep, out=tmp_path_factory.mktemp("res"), jobs=1, quiet=True)


def _texts(fig: Figure) -> str:
    out = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    for leg in fig.legends:  # legends under the axes: the figure's
        out += [leg.get_title().get_text()] + [t.get_text() for t in leg.get_texts()]
    return " | ".join(out)


def test_latency_cdf(sweep_dir):
    fig = plots.latency_cdf(load_latency(sweep_dir), by="variant")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    t = _texts(fig)
    assert "?" in t and "latency (" in t and "fleecing-push" in t and "baseline" in t


def test_occupancy_has_a_panel_per_tier(sweep_dir):
    fig = plots.occupancy(load_timelines(sweep_dir))
    ylabels = [ax.get_ylabel() for ax in fig.axes]
    assert ylabels == ["RAM tier in use (MiB)", "disk tier in use (MiB)"] or \
        ylabels == ["RAM tier in use (KiB)", "disk tier in use (KiB)"], ylabels
    assert "time since the backup started (s)" in _texts(fig)


def test_metric_vs_param_has_ci_bands(sweep_dir):
    runs = load_runs(sweep_dir)
    fig = plots.metric_vs_param(runs, "backup.max-workers", "backup_duration_s")
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 2  # one line per scheme
    assert len(ax.collections) >= 1  # CI bands
    assert ax.get_xlabel().startswith("max-workers") and ax.get_ylabel().endswith(("(s)", "(ms)"))


def test_policy_bars_have_error_bars(sweep_dir):
    runs = load_runs(sweep_dir)
    fig = plots.policy_bars(runs[runs["backup.max-workers"] == 4],
                            ["backup_duration_s", "cbw_count", "fleecing_peak_bytes"])
    assert len([a for a in fig.axes if a.get_visible()]) == 3
    assert all(len(a.patches) == 2 for a in fig.axes[:3])
    assert "95 % CI" in _texts(fig)


@pytest.mark.parametrize("args", [
    ["--kind", "cdf", "--where", "backup.max-workers=4"],
    ["--kind", "occupancy", "--where", "variant=fleecing-push"],
    ["--kind", "metric", "--metric", "write_p99_s"],
    ["--kind", "bars", "--metric", "cbw_count", "--metric", "write_p99_s"],
])
def test_plot_cli_writes_png_and_svg(sweep_dir, tmp_path, args):
    stem = tmp_path / "fig"
    assert main(["plot", str(sweep_dir), *args, "--out", str(stem), "--quiet"]) == 0
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "fig.svg").read_bytes()[:2000]


def test_plot_cli_reads_a_run_directory(tmp_path, small_cfg):
    import yaml
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(BASE, name="one")))
    assert main(["run", str(cfg), "--out", str(tmp_path), "--quiet"]) == 0
    assert main(["plot", str(tmp_path / "one"), "--kind", "cdf", "--out",
                 str(tmp_path / "cdf"), "--quiet"]) == 0
    assert (tmp_path / "cdf.png").is_file()
    assert main(["plot", str(tmp_path / "one"), "--kind", "bars", "--quiet"]) == 2


@pytest.mark.parametrize("where", [None, "variant=fleecing-push"])
def test_occupancy_legend_does_not_cover_the_title(sweep_dir, where):
    tl = load_timelines(sweep_dir)
    if where:
        col, val = where.split("=")
        tl = tl[tl[col] == val]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = plots.occupancy(tl)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lay out, then compare what was drawn
    r = canvas.get_renderer()
    title = fig._suptitle.get_window_extent(r)
    for leg in fig.legends:
        box = leg.get_window_extent(r)
        assert not box.overlaps(title), (box, title)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(r))


def test_cdf_of_a_run_directory_reads_only_the_write_latencies(tmp_path, monkeypatch):
    import pandas as pd
    import pyarrow.parquet as pq
    import yaml
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(dict(BASE, name="one")))
    assert main(["run", str(cfg), "--out", str(tmp_path), "--quiet"]) == 0
    for tl in (tmp_path / "one").rglob("timeline.parquet"):
        tl.write_bytes(b"not parquet")  # a cdf must not even open it
    asked = []
    real = pq.read_table

    def spy(path, columns=None, **kw):
        asked.append(tuple(columns or ()))
        return real(path, columns=columns, **kw)
    monkeypatch.setattr(pq, "read_table", spy)
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("whole file read"))
    lat, tl = plots.load_run_dir(tmp_path / "one", latency=True, timelines=False)
    assert asked and all(set(c) == {"op", "phase", "latency"} for c in asked)
    assert len(tl) == 0 and set(lat["phase"]) == {"baseline", "backup"}
    assert main(["plot", str(tmp_path / "one"), "--kind", "cdf", "--out",
                 str(tmp_path / "cdf"), "--quiet", "--format", "png"]) == 0


def test_metric_vs_param_draws_a_panel_per_metric(sweep_dir):
    runs = load_runs(sweep_dir)
    metrics = ["backup_duration_s", "write_p99_s", "cbw_count"]
    fig = plots.metric_vs_param(runs, "backup.max-workers", metrics)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == [plots.metric_label(m) for m in metrics]
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)  # one line per scheme each
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["fleecing-pull", "fleecing-push"]


def test_a_speed_of_zero_is_drawn_as_unlimited_past_the_largest_limit():
    # backup.speed 0 is QEMU's "no limit": it must not sit at x = 0
    rows = [{"backup.speed": sp, "backup.scheme": sc, "replication": r, "point": i,
             "backup_duration_s": (sp and 1 / sp or 0.5) + r * 1e-3}
            for i, (sp, sc) in enumerate((sp, sc) for sp in (0, 2**20, 2**21, 2**23)
                                         for sc in ("backup", "fleecing-push"))
            for r in range(2)]
    import pandas as pd
    runs = pd.DataFrame(rows)
    runs.attrs["axes"] = ["backup.speed", "backup.scheme"]
    fig = plots.metric_vs_param(runs, "backup.speed", ["backup_duration_s"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["1", "2", "8", "unlimited"] and ax.get_xscale() == "log"
    assert ax.get_xlabel() == "backup job speed limit (MiB/s)"
    # the unlimited point is one step (the last ratio, x4) past 8 MiB/s, joined
    # by a dotted segment
    xs = sorted({x for line in ax.get_lines() for x in line.get_xdata()})
    assert xs == [1, 2, 8, 32]
    assert any(line.get_linestyle() == ":" for line in ax.get_lines())
