import pytest

from fleecesim.units import parse_rate, parse_size, parse_time


@pytest.mark.parametrize("text,want", [("64KiB", 65536), ("1GiB", 2**30), ("4k", 4096),
                                       ("1.5MiB", 1572864), ("1GB", 10**9), (512, 512)])
def test_sizes(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("text,want", [("100MiB/s", 100 * 2**20), ("1GB/s", 1e9), (5.0, 5.0)])
def test_rates(text, want):
    assert parse_rate(text) == want


@pytest.mark.parametrize("text,want", [("2ms", 2e-3), ("50us", 50e-6), ("1.5s", 1.5),
                                       ("3", 3.0), ("1min", 60.0)])
def test_times(text, want):
    assert parse_time(text) == pytest.approx(want)


@pytest.mark.parametrize("fn,bad", [(parse_size, "12 parsecs"), (parse_size, "0.3B"),
                                    (parse_rate, "100MiB"), (parse_time, "2 fortnights"),
                                    (parse_size, True)])
def test_bad_units_name_what_was_expected(fn, bad):
    with pytest.raises(ValueError, match="expected"):
        fn(bad)
