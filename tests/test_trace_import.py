"""Trace importers: each format on a faithful file, byte conservation, transfer times, one-line errors, exit 2."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.cli import app as app_module
from edgesim.cli.app import main
from edgesim.cli.trace import trace_app
from profilers.errors import EdgesimError
from simulator.link import load_rate_trace
from simulator.trace_import import (
    import_csv,
    import_hsdpa,
    import_lumos5g,
    import_mahimahi,
    opportunities_to_rate,
    trace_csv_text,
    write_trace,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "traces"
SHIPPED = REPO / "scenarios" / "traces"

# Synthetic logs in each dataset's documented layout (REFERENCES.md section 4; the datasets state no licence, so
# none of their rows are copied): Norway HSDPA = unix s, monotonic ms, lat, lon, bytes since last, ms since last;
# Ghent 4G/LTE = epoch ms, ms since start, lat, lon, bytes since last, ms since last (zero-padded to 4 digits).
NORWAY_HSDPA = """1300000000 120000 59.900000 10.700000 150000 1000
1300000001 121050 59.900100 10.700050 210000 1050
1300000002 122050 59.900200 10.700100 0 1000
1300000003 123240 59.900300 10.700150 98000 1190
"""
GHENT_4G = """1450000000000 5000 51.0500000000000 3.72000000000000 2000000 1000
1450000001001 6001 51.0500100000000 3.72001000000000 2500000 1001
1450000002000 7000 51.0500200000000 3.72002000000000 2400000 0999
1450000003000 8000 51.0500300000000 3.72003000000000 1800000 1000
"""


def mahimahi_stamps(seed: int = 7, duration_ms: int = 5000) -> np.ndarray:
    """Synthetic delivery opportunities in mahimahi's format (mahimahi's own traces are GPL: not shipped)."""
    rng = np.random.default_rng(seed)
    per_ms = rng.poisson(np.where(np.arange(duration_ms) % 2000 < 1500, 1.5, 0.2))
    return np.repeat(np.arange(duration_ms), per_ms)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def trace_of(trace, tmp_path, name="out.csv"):
    """What the simulator reads back from an importer's output."""
    return load_rate_trace(write_trace(trace, tmp_path / name, "test", "test"))


# ---------------------------------------------------------------- each importer


def test_mahimahi_rows_and_rate(tmp_path):
    stamps = mahimahi_stamps()
    src = write(tmp_path, "cell.up", "".join(f"{t}\n" for t in stamps))
    imported = import_mahimahi(src, bin_ms=100)
    link = trace_of(imported, tmp_path)
    assert imported.times_s[1] == pytest.approx(0.1)
    first_bin = np.sum(stamps < 100)
    assert link.rates_bps[0] == pytest.approx(first_bin * 1500 * 8 / 0.1)
    assert imported.end_s == pytest.approx(5.0)


def test_norway_and_ghent_documented_examples(tmp_path):
    for name, text, dataset in [("norway.log", NORWAY_HSDPA, "Norway HSDPA"), ("ghent.log", GHENT_4G, "Ghent 4G")]:
        imported = import_hsdpa(write(tmp_path, name, text))
        rows = np.array([line.split() for line in text.splitlines()], dtype=float)
        assert dataset in imported.source
        # interval k: bytes / (column 2 now - column 2 before); the first starts column 6 before its column 2
        widths_ms = np.diff(np.concatenate(([rows[0, 1] - rows[0, 5]], rows[:, 1])))
        assert np.allclose(imported.rates_mbps, rows[:, 4] * 8 / (widths_ms * 1e-3) / 1e6)
        assert imported.end_s == pytest.approx(widths_ms.sum() / 1e3)
        link = trace_of(imported, tmp_path)
        assert link.bits_until(imported.end_s) == pytest.approx(rows[:, 4].sum() * 8, rel=1e-9)


def test_lumos5g_excerpt_first_run():
    imported = import_lumos5g(DATA / "lumos5g_loop_run1_excerpt.csv")
    assert imported.rates_mbps[:3].tolist() == [78, 117, 110] and imported.times_s[0] == 0
    assert imported.end_s == 120 and "run_num 1" in imported.conversion


def test_csv_units_and_rtt(tmp_path):
    src = write(tmp_path, "g.csv", "t_ms,kbps,rtt\n0,1000,30\n500,2000,40\n1000,500,35\n")
    imported = import_csv(src, "t_ms", "kbps", "kbit/s", "ms", rtt_column="rtt")
    assert imported.times_s.tolist() == [0, 0.5, 1.0] and imported.rates_mbps.tolist() == [1, 2, 0.5]
    text = trace_csv_text(imported)
    assert "time_s,data_rate_mbps,rtt_ms" in text and "0.5,2,40" in text
    link = trace_of(imported, tmp_path)  # the reader keeps accepting the extra column
    assert link.rate_bps_at(0.7) == 2e6
    by_bytes = import_csv(write(tmp_path, "b.csv", "t,b\n0,999\n1,125000\n3,500000\n"), "t", "b", "bytes")
    assert by_bytes.rates_mbps.tolist() == [1.0, 2.0] and by_bytes.end_s == 3


def test_shipped_traces_read_and_say_where_they_came_from():
    shipped = sorted(SHIPPED.glob("*.csv"))
    assert len(shipped) >= 3
    for path in shipped:
        link = load_rate_trace(path)
        assert link.times_s[0] == 0 and len(link.times_s) > 10
        if path.name != "wifi_walk.csv":
            head = [line for line in path.read_text().splitlines() if line.startswith("#")]
            assert [h.split(":")[0] for h in head] == ["# source", "# conversion", "# licence"]
            assert "CC BY 4.0" in head[2]
            assert path.stat().st_size < 200_000


# ---------------------------------------------------------------- conservation and transfer time


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10_000), bin_ms=st.sampled_from([1, 10, 50, 100, 1000]), data=st.data())
def test_mahimahi_bytes_conserved_over_whole_bins(seed, bin_ms, data, tmp_path_factory):
    """Integral of the rate over bins [a, b) = opportunities in [a bin_ms, b bin_ms) x 1500 B, to rounding."""
    stamps = mahimahi_stamps(seed, duration_ms=3000)
    times, rates = opportunities_to_rate(stamps, bin_ms)
    n = times.size
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a + 1, n))
    src = tmp_path_factory.mktemp("mm") / "t.up"
    src.write_text("".join(f"{t}\n" for t in stamps))
    link = trace_of(import_mahimahi(src, bin_ms), src.parent)
    carried_bits = link.bits_until(b * bin_ms / 1e3) - link.bits_until(a * bin_ms / 1e3)
    expected_bits = np.sum((stamps >= a * bin_ms) & (stamps < b * bin_ms)) * 1500 * 8
    assert carried_bits == pytest.approx(expected_bits, rel=1e-9, abs=1e-3)


def test_transfer_time_over_imported_trace_is_the_rate_integral(tmp_path):
    """Per frame: finish_time solves integral_start^finish rate = bits, checked by bisection on the file's rows."""
    stamps = mahimahi_stamps(3)
    link = trace_of(import_mahimahi(write(tmp_path, "m.up", "".join(f"{t}\n" for t in stamps))), tmp_path)
    rows = np.loadtxt(tmp_path / "out.csv", delimiter=",", comments="#", skiprows=4)
    t_rows, r_rows = rows[:, 0], rows[:, 1] * 1e6

    def carried(t0, t1):
        edges = np.clip(np.append(t_rows, np.inf), t0, t1)
        return float(np.sum(np.diff(edges) * r_rows))

    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 6, 200))  # frames every ~30 ms, some beyond the trace's end
    bits = rng.uniform(1e3, 4e5, 200) * 8
    finish = link.finish_time(starts, bits)
    worst = 0.0
    for s, b, f in zip(starts, bits, finish):
        lo, hi = s, s + 100.0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if carried(s, mid) < b else (lo, mid)
        worst = max(worst, abs(f - hi))
    assert worst < 1e-6


def test_header_comment_is_skipped_by_the_reader(tmp_path):
    p = write(tmp_path, "c.csv", "# source: x\n# conversion: y\ntime_s,data_rate_mbps\n# mid comment\n0,5\n1,10\n")
    link = load_rate_trace(p)
    assert link.times_s.tolist() == [0, 1] and link.rates_bps.tolist() == [5e6, 10e6]


# ---------------------------------------------------------------- bad input: one line, file and line, exit 2

BAD = [
    ("mahimahi", "time_s,data_rate_mbps\n0,5\n", ":1: not a mahimahi trace"),
    ("mahimahi", "1\n5\n3\n", ":3: mahimahi timestamps must not decrease"),
    ("mahimahi", "# nothing\n", ":1: empty trace"),
    ("hsdpa", "1\n2\n", ":1: not an HSDPA/Ghent log"),
    ("hsdpa", NORWAY_HSDPA.replace("210000", "-210000"), ":2: bytes must be >= 0"),
    ("hsdpa", NORWAY_HSDPA.replace("121050", "119050"), ":2: column 2 (ms since start) must increase"),
    ("hsdpa", NORWAY_HSDPA.replace(" 0 1000", " abc 1000"), ":3: column 5 (bytes) must be a number"),
    ("lumos5g", NORWAY_HSDPA, ":1: not a Lumos5G trace"),
    ("lumos5g", "run_num,seq_num,Throughput\n1,1.0,78\n1,2.0,-3\n", ":3: Throughput must be >= 0"),
    ("lumos5g", "run_num,seq_num,Throughput\n1,1.0,78\n1,1.0,3\n", ":3: seq_num must increase strictly"),
    ("lumos5g", "run_num,seq_num,Throughput\n", ":1: empty trace"),
    ("csv", "time_s,data_rate_mbps\n0,1\n1,x\n", ":3: data_rate_mbps must be a number"),
    ("csv", "time_s,data_rate_mbps\n0,1\n2,1\n1,1\n", ":4: time_s must increase strictly"),
    ("csv", "t,r\n0,1\n", ":1: not a generic CSV trace: missing column(s) time_s, data_rate_mbps"),
]


@pytest.mark.parametrize("fmt, text, words", BAD)
def test_bad_input_is_one_line_with_file_and_line(fmt, text, words, tmp_path):
    src = write(tmp_path, "bad.txt", text)
    importer = {"mahimahi": import_mahimahi, "hsdpa": import_hsdpa, "lumos5g": import_lumos5g, "csv": import_csv}
    with pytest.raises(EdgesimError) as err:
        importer[fmt](src)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{src}:") and words in msg


@pytest.mark.parametrize("text, words", [
    ("time_s,data_rate_mbps\n0,1\n1,-2\n1.5,1\n", ":3: time_s and data_rate_mbps must be finite and >= 0"),
    ("time_s,data_rate_mbps\n0,1\nx,2\n", ":3: time_s and data_rate_mbps must be numbers"),
    ("# c\ntime_s,data_rate_mbps\n0,1\n2,1\n1,1\n", ":5: time_s must increase strictly"),
    ("# only\n# comments\n", ":1: link trace is empty"),
    ("# c\ntime_s,data_rate_mbps\n", ":2: link trace has no rows"),
    ("# c\nt,rate\n0,1\n", ":2: link trace needs columns time_s,data_rate_mbps"),
])
def test_link_reader_errors_name_file_and_line(text, words, tmp_path):
    p = write(tmp_path, "l.csv", text)
    with pytest.raises(EdgesimError) as err:
        load_rate_trace(p)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{p}:") and words in str(err.value)


@pytest.fixture
def edgesim_with_trace():
    """The edgesim app with `trace` mounted (as the lead mounts it in edgesim/cli/app.py)."""
    if not any(group.name == "trace" for group in app_module.app.registered_groups):
        app_module.app.add_typer(trace_app, name="trace")
    return main


@pytest.mark.parametrize("fmt, text, words", BAD[:2] + BAD[4:5] + BAD[8:9] + BAD[11:12])
def test_cli_bad_input_exit_2_one_line(fmt, text, words, tmp_path, capsys, edgesim_with_trace):
    src = write(tmp_path, "bad.txt", text)
    assert edgesim_with_trace(["trace", "import", fmt, str(src), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{src}:" in err and words in err
    assert not (tmp_path / "o.csv").exists()


def test_cli_options_and_unknown_names(tmp_path, capsys, edgesim_with_trace):
    src = write(tmp_path, "g.csv", "t,r\n0,1\n1,2\n")
    out = tmp_path / "o.csv"
    for args, words in [(["nope", str(src)], "unknown trace format 'nope'; known: csv, hsdpa, lumos5g, mahimahi"),
                        (["csv", str(src), "--time-column", "t", "--rate-column", "r", "--rate-unit", "Gb"],
                         "unknown rate unit 'Gb'"),
                        (["mahimahi", str(src), "--rate-unit", "bytes"], "--rate-unit applies to FORMAT csv only")]:
        assert edgesim_with_trace(["trace", "import", *args, "--out", str(out)]) == 2
        assert words in capsys.readouterr().err
    args = ["trace", "import", "csv", str(src), "--time-column", "t", "--rate-column", "r", "--out", str(out),
            "--source", "a test", "--licence", "CC0"]
    assert edgesim_with_trace(args) == 0
    assert out.read_text().startswith("# source: a test\n# conversion: generic CSV columns t (s), r (Mbit/s)")
    assert "# licence: CC0\n" in out.read_text()


def test_end_row_holds_the_last_rate_and_the_file_ends_with_a_newline(tmp_path):
    trace = import_csv(write(tmp_path, "g.csv", "time_s,data_rate_mbps\n0,2\n1,8\n2,4\n"))
    text = trace_csv_text(trace)
    assert text.endswith("\n2,4\n3,4\n")  # the end row repeats the last rate (4), not the mean (4.67)
    link = trace_of(trace, tmp_path)
    assert link.rate_bps_at(100.0) == pytest.approx(4e6)  # trace_end: hold holds the last rate
    zero_last = import_csv(write(tmp_path, "z.csv", "time_s,data_rate_mbps\n0,2\n1,0\n"))
    assert trace_csv_text(zero_last).endswith("\n2,2\n") and "last non-zero rate" in trace_csv_text(zero_last)


def test_cli_prints_the_converted_range_and_warns_on_unit_slips(tmp_path, capsys, edgesim_with_trace):
    rows = "".join(f"{t},{r}\n" for t, r in [(0, 3000), (60000, 12000), (120000, 5000)])  # ms and kbit/s
    src = write(tmp_path, "kbps.csv", "t,rate\n" + rows)
    args = ["trace", "import", "csv", str(src), "--time-column", "t", "--rate-column", "rate"]
    assert edgesim_with_trace([*args, "--out", str(tmp_path / "a.csv")]) == 0
    out, err = capsys.readouterr()
    assert "rows over 180000 s (2.08 days), rates 3,000 to 12,000 Mbit/s, mean 6,667 Mbit/s" in out
    assert "highest rate 12,000 Mbit/s (12 Gbit/s) is above 10 Gbit/s: kbit/s read as Mbit/s?" in err
    assert "more than a day: milliseconds read as seconds? (in ms it lasts 3 min)" in err
    assert edgesim_with_trace([*args, "--time-unit", "ms", "--rate-unit", "kbit/s", "--out", str(tmp_path / "b.csv")]) == 0
    out, err = capsys.readouterr()
    assert "rows over 180 s (3 min), rates 3 to 12 Mbit/s" in out and err == ""
