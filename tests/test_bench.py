"""`llmzip bench`: table, JSON records, plot, input labels, published rows, one-line errors;
bench.py is a library (no click, no cli), report.py draws."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmzip.cli import bench, report
from tests.helpers import ALICE, CORPUS, DATA, ROOT, invoke, subprocess_env

for _module in (*bench.EXTRA, *bench.PLOT_EXTRA):  # pip install -e '.[test,bench]'
    pytest.importorskip(_module, reason="the bench extra is not installed")

OPTS = ["--context", "16", "--threads", "1", "--streams", "2", "-q"]
CLASSIC = ["gzip -9", "bzip2 -9", "xz -9", "zstd -19", "brotli -q 11"]
KEYS = {"file", "label", "compressor", "measured", "bytes", "compressed_bytes", "bpb",
        "compress_kbps", "decompress_kbps", "tokens_per_s", "peak_rss_mb", "roundtrip_ok"}


def run(args: list[str], model: str):
    return invoke(["bench", *args, "--model", model, *OPTS])


@pytest.fixture
def two_files(tmp_path) -> list[Path]:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(CORPUS.encode()[:600])
    b.write_bytes(CORPUS.encode()[100:900])
    return [a, b]


def test_table(two_files, tiny_model):
    res = run([str(two_files[0])], tiny_model)
    assert res.exit_code == 0, res.output
    out = res.stdout
    for name in ["llmzip", *CLASSIC]:
        assert name in out
    assert "a.txt" in out and "bits/byte" in out and "peak RSS" in out
    assert "│ published" not in out  # an unknown file gets no reference rows
    assert out.count(" ok ") == 6


def test_json_and_plot(two_files, tiny_model, tmp_path):
    png = tmp_path / "out.png"
    res = run([*map(str, two_files), "--json", "--plot", str(png)], tiny_model)
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    measured = [r for r in records if r["measured"]]
    assert len(measured) == 12
    assert all(not r["measured"] for r in records[12:])
    assert {(r["label"], r["compressor"]) for r in measured} == {
        (f, c) for f in ("a.txt", "b.txt") for c in ["llmzip", *CLASSIC]}
    for r in measured:
        assert r.keys() >= KEYS
        assert r["roundtrip_ok"] is True
        assert r["bytes"] in (600, 800)
        assert r["bpb"] == pytest.approx(8 * r["compressed_bytes"] / r["bytes"], abs=1e-3)
        assert r["compress_kbps"] > 0 and r["decompress_kbps"] > 0 and r["peak_rss_mb"] > 0
        assert (r["tokens_per_s"] is None) == (r["compressor"] != "llmzip")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_prefix_and_settings(two_files, tiny_model):
    res = run([str(two_files[0]), "--bytes", "100", "--json", "--no-ngram", "--no-match",
               "--no-bias", "--no-recall"], tiny_model)
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    assert {r["label"] for r in records} == {"a.txt[:100]"}
    assert all(r["bytes"] == 100 and r["roundtrip_ok"] for r in records)


@pytest.fixture
def fake_known(tmp_path, monkeypatch) -> Path:
    """A small file registered as a known benchmark file with published figures."""
    path = tmp_path / "renamed.bin"
    data = CORPUS.encode()[:500]
    path.write_bytes(data)
    known = bench.KnownFile("fakebench", len(data), hashlib.sha256(data).hexdigest())
    monkeypatch.setattr(bench, "KNOWN_FILES", (*bench.KNOWN_FILES, known))
    monkeypatch.setattr(bench, "PUBLISHED", {"fakebench": (("gzip -9", 3.0), ("cmix", 1.5))})
    return path


def test_known_file_label_and_published_rows(fake_known, tiny_model, tmp_path):
    png = tmp_path / "ref.png"
    res = run([str(fake_known), "--json", "--plot", str(png)], tiny_model)
    assert res.exit_code == 0, res.output
    records = json.loads(res.stdout)
    assert {r["label"] for r in records} == {"fakebench"}
    refs = [r for r in records if not r["measured"]]
    assert [(r["compressor"], r["bpb"]) for r in refs] == [("gzip -9", 3.0), ("cmix", 1.5)]
    assert all(r["compress_kbps"] is None and r["roundtrip_ok"] is None for r in refs)
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = run([str(fake_known)], tiny_model).stdout
    assert "published" in table and "fakebench" in table

    prefix = json.loads(run([str(fake_known), "--bytes", "200", "--json"], tiny_model).stdout)
    assert {r["label"] for r in prefix} == {"fakebench[:200]"}
    assert all(r["measured"] for r in prefix)  # a prefix gets no published rows


def test_identify_by_size_and_name(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "KNOWN_FILES", (bench.KnownFile("enwik9", 10, None),))
    named = tmp_path / "enwik9"
    named.write_bytes(b"0123456789")
    other = tmp_path / "other"
    other.write_bytes(b"0123456789")
    assert bench.identify(str(named)).name == "enwik9"
    assert bench.identify(str(other)) is None
    assert bench.label_for(str(named), 10, 4, bench.identify(str(named))) == "enwik9[:4]"
    assert bench.label_for(str(other), 10, 10) == "other"


@pytest.mark.skipif(not ALICE.exists(), reason="../shared/data not present")
def test_identify_shared_data():
    assert bench.identify(str(ALICE)).name == "alice29.txt"
    enwik6 = DATA / "enwik6"
    if enwik6.exists():
        known = bench.identify(str(enwik6))
        assert known.name == "enwik6"
        assert bench.label_for(str(enwik6), 10**6, 200_000, known) == "enwik6[:200000]"
    assert [r.compressor for r in bench.published_records(str(ALICE), "alice29.txt")][-1] \
        .startswith("Nacrith")


def test_missing_file_one_line(tmp_path, tiny_model):
    res = run([str(tmp_path / "nope.txt")], tiny_model)
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmzip: ") and "nope.txt" in lines[0]
    assert res.stdout == ""


def test_failed_round_trip_exits_1(two_files, tiny_model, monkeypatch):
    broken = ("gzip -9", bench._gzip, lambda blob: b"garbage")
    monkeypatch.setattr(bench, "CLASSIC", (broken, *bench.CLASSIC[1:]))
    res = run([str(two_files[0]), "--json"], tiny_model)
    assert res.exit_code == 1
    records = json.loads(res.stdout)
    assert [r["roundtrip_ok"] for r in records if r["compressor"] == "gzip -9"] == [False]
    assert res.stderr.strip().splitlines()[-1] == "llmzip: round trip failed: a.txt (gzip -9)"


def test_decompressor_error_is_a_failed_round_trip(two_files, tiny_model, monkeypatch):
    def boom(blob: bytes) -> bytes:
        raise ValueError("corrupt")

    monkeypatch.setattr(bench, "CLASSIC", (*bench.CLASSIC[:-1], ("brotli -q 11", bench._brotli,
                                                                  boom)))
    res = run([str(two_files[0])], tiny_model)
    assert res.exit_code == 1 and "FAILED" in res.stdout
    assert res.stderr.strip() == "llmzip: round trip failed: a.txt (brotli -q 11)"


def test_plot_into_missing_directory(two_files, tiny_model, tmp_path):
    res = run([str(two_files[0]), "--plot", str(tmp_path / "no" / "p.png")], tiny_model)
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1


def _record(**kw) -> bench.Record:
    base = dict(file="a.txt", label="a.txt", compressor="llmzip", measured=True, bytes=20000,
                compressed_bytes=2904, bpb=1.1616, compress_kbps=0.0031234,
                decompress_kbps=0.0456, tokens_per_s=1.234, decompress_tokens_per_s=12.5,
                peak_rss_mb=1934.4, roundtrip_ok=True)
    return bench.Record(**{**base, **kw})


def test_table_keeps_significant_digits():
    """A slow llmzip must not read "0.0 KB/s" where the JSON has 0.003."""
    import io

    out = io.StringIO()
    report.render_table([_record(), _record(compressor="gzip -9", compress_kbps=12345.6,
                                            tokens_per_s=None)], out)
    table = out.getvalue()
    assert "0.00312" in table and "0.0456" in table and "1.23 / 12.5" in table, table
    assert "1,934" in table and "12,346" in table
    assert " 0.0 " not in table
    assert _record().to_json()["compress_kbps"] == 0.003123


@pytest.mark.parametrize("value, text", [(0.0031234, "0.00312"), (0.5, "0.500"),
                                         (12.345, "12.3"), (999.4, "999"), (1234.5, "1,234"),
                                         (0.0, "0"), (None, "-")])
def test_significant_digits(value, text):
    assert report.sig(value) == text


def test_footnotes_cite_no_path_outside_the_repository():
    for resettable in (True, False):
        for note in report.footnotes(resettable):
            assert "../" not in note and "shared/" not in note, note
    assert "published" in report.footnotes(True)[-1]


def test_bench_is_a_library_the_cli_calls():
    """No import circle: cli/bench.py and cli/report.py import neither click nor the command
    line's own modules (main, options, files, info); both may import records.py (what a row
is), and report.py nothing of bench.py's."""
    import ast

    for name in ("bench.py", "report.py"):
        tree = ast.parse((ROOT / "llmzip" / "cli" / name).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                 and n.module == "llmzip.cli" for a in n.names}
        assert "click" not in imported, (name, imported)
        assert not names & {"main", "options", "files", "info"}, (name, names)
        assert not {m for m in imported if m and m.startswith("llmzip.cli.")} - {
            "llmzip.cli.records"}, (name, imported)


def test_missing_extra_is_one_line(two_files, tiny_model, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "brotli" else real(name, *a))
    res = run([str(two_files[0])], tiny_model)
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr == "llmzip: bench needs brotli: pip install 'llmzip[bench]'\n"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("*.py")))
def test_benchmark_scripts_still_run(script):
    """Each benchmark script imports what it uses from llmzip and answers --help (a refactor
    that breaks one fails here, not in a reader's hands)."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--help"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_decompression_runs_with_the_settings_threads(tiny_model, monkeypatch):
    """`bench --threads N` times both directions on N threads (decompression took the
    machine's thread count before, which skewed its speed on a busy machine)."""
    from llmzip.codec import stream
    from llmzip.codec.settings import Settings

    seen = {}
    real = stream.decompress_stream

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(stream, "decompress_stream", spy)
    record = bench.measure_llmzip(CORPUS.encode()[:200], Settings(model=tiny_model, threads=1),
                                  "x", "x")
    assert record.roundtrip_ok and seen["threads"] == 1 and seen["device"] == "cpu"


def test_plot_of_a_level_ladder(tmp_path):
    """Rows "llmzip -N" (benchmarks/plot_levels.py) plot as one line of stars beside the
    classic compressors; the PNG is written."""
    from llmzip.cli import report

    rows = [_record(compressor=f"llmzip -{n}", compress_kbps=0.2 * n, bpb=1.1 - 0.01 * n)
            for n in (1, 5, 8)]
    rows.append(_record(compressor="gzip -9", compress_kbps=3000.0, bpb=2.85, tokens_per_s=None))
    png = tmp_path / "ladder.png"
    report.plot(rows, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frame_replay_gives_back_the_recorded_size(tiny_model, tmp_path):
    """benchmarks/frame_replay.py: a replay of the recorded steps with the recorded settings
    writes the recorded file's size; another setting codes the same steps differently."""
    text = tmp_path / "text.txt"
    text.write_text(CORPUS * 2)
    script = [sys.executable, str(ROOT / "benchmarks" / "frame_replay.py")]
    env = subprocess_env(tiny_model)

    def run(*args: str) -> str:
        done = subprocess.run([*script, *args], capture_output=True, text=True, env=env,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    recorded = run("record", str(text), str(tmp_path / "rec"), "--level", "1")
    size = int(recorded.split(": ")[-1].split()[0])
    same = run("replay", str(text), str(tmp_path / "rec"), "--level", "1")
    assert same.startswith(f"recorded settings: {size} B")
    other = run("replay", str(text), str(tmp_path / "rec"), "--level", "1", "lm_scale=128")
    assert other.startswith("lm_scale=128: ") and not other.startswith(f"lm_scale=128: {size} B")
