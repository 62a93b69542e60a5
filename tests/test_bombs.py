"""Bad input costs no more than its size (issue 42): forged counts, streams and windows are
refused before the model runs or within a few hundred tokens; concatenated files decode as the
concatenation of their members, like gzip's."""

from __future__ import annotations

import io

import numpy as np
import pytest

import llmzip
from llmzip.codec import rangecoder
from llmzip.errors import FormatError, LlmzipError
from tests.forgeries import forgeries
from tests.helpers import CORPUS, invoke, one_line_error

TEXT = CORPUS.encode()[:300]


@pytest.fixture(scope="module")
def real_blob(real_model) -> bytes:
    return llmzip.compress(TEXT, model=real_model, threads=1)


@pytest.fixture(scope="module")
def forged(real_blob) -> dict[str, bytes]:
    return forgeries(real_blob)


def _decoded_steps(monkeypatch) -> list[int]:
    """Counts the model steps the decoder takes (the work a forgery costs)."""
    from llmzip.codec import predictor

    steps = [0]
    step = predictor.Predictor.step

    def counting(self):
        steps[0] += 1
        return step(self)

    monkeypatch.setattr(predictor.Predictor, "step", counting)
    return steps


@pytest.mark.model
@pytest.mark.parametrize("name", ["short-form-huge-count", "long-form-huge-count",
                                  "many-streams", "huge-window", "many-streams-long-window",
                                  "random-payload", "real-payload-more-tokens"])
def test_a_forgery_fails_at_once_or_within_its_payload(forged, real_model, name, monkeypatch):
    steps = _decoded_steps(monkeypatch)
    with pytest.raises(LlmzipError):
        llmzip.decompress(forged[name], model=real_model, threads=1)
    # At most a few hundred steps: the payload's bits, at a few bits per token (the real
    # payload: its own tokens, then the zeros past it).
    assert steps[0] <= (len(TEXT) if name.startswith("real") else 300), steps[0]


@pytest.mark.model
def test_the_51_byte_bomb_is_refused_before_any_step(forged, real_model, monkeypatch, tmp_path):
    bomb = forged["short-form-huge-count"]
    assert len(bomb) <= 52
    steps = _decoded_steps(monkeypatch)
    path = tmp_path / "bomb.llmz"
    path.write_bytes(bomb)
    r = invoke(["-t", "--model", real_model, str(path)])
    assert r.exit_code == 1 and steps[0] == 0
    one_line_error(r.stderr)
    assert "more tokens than its compressed data can hold" in r.stderr


def test_most_tokens_is_the_floor_of_the_coder():
    # 49,152 tokens in two parts (192 groups, 256 places): ~3.8e-5 bits a token at best
    assert rangecoder.least_bits_per_token(49152, True) == pytest.approx(3.835e-5, rel=1e-3)
    assert rangecoder.most_tokens(16, 49152, True) < 201_326_592 // 20


def test_no_real_payload_reaches_the_bound():
    """The encoder's payload always holds the information of its symbols: the decoder's
    lower bound of it stays below the budget, for sure and unlikely symbols alike."""
    rng = np.random.default_rng(0)
    V, n = 600, 3000
    for sure in (0.5, 0.999, 1.0):
        p = np.full((n, V), (1 - sure) / (V - 1))
        symbols = rng.integers(0, V, n)
        p[np.arange(n), symbols] = sure
        p[: n // 10, :] = 1.0 / V  # some rows uniform
        p[n // 10: n // 5] = 1e-300  # some where the symbol is all but impossible
        p[np.arange(n // 10, n // 5), symbols[n // 10: n // 5]] = 1.0
        p[n // 5: n // 4, symbols[0]] = 1.0  # and some with another symbol sure
        for split in (False, True):
            enc = rangecoder.Encoder(split)
            enc.encode(symbols, p)
            data = enc.finish()
            dec = rangecoder.Decoder(data, split)
            assert np.array_equal(dec.decode(p), symbols)
            assert dec.spent <= dec.budget


def test_decoding_past_the_payload_stops():
    V = 600
    p = np.full((1, V), 1.0 / V)
    dec = rangecoder.Decoder(b"\x00" * 8, True)
    with pytest.raises(ValueError, match="more symbols than the compressed data can hold"):
        for _ in range(1000):
            dec.decode(p)


# ------------------------------------------------------------------------- concatenation


@pytest.mark.parametrize("shapes", [("short", "short"), ("long", "short"), ("short", "long"),
                                    ("empty", "long"), ("long", "empty", "short")])
def test_concatenated_files_decode_to_the_concatenation(tiny_model, model_coding, shapes):
    parts, blobs = [], []
    for i, shape in enumerate(shapes):
        data = {"short": TEXT[: 80 + i], "long": TEXT[: 200 + i], "empty": b""}[shape]
        extra = {"frame_size": 64} if shape == "long" else {}
        parts.append(data)
        blobs.append(llmzip.compress(data, model=tiny_model, threads=1, window=16, sinks=2,
                                     **extra))
    blob = b"".join(blobs)
    assert llmzip.decompress(blob, model=tiny_model, threads=1) == b"".join(parts)
    from llmzip.cli.info import describe

    text = describe(io.BytesIO(blob), "x.llmz")
    assert text.count("llmzip format version") == len(shapes)
    assert f"x.llmz, member {len(shapes)}:" in text


def test_bytes_after_the_last_member_are_refused(tiny_model):
    blob = llmzip.compress(TEXT[:100], model=tiny_model, threads=1, window=16, sinks=2)
    for tail in (b"\x00", b"LLM", b"LLMZ", b"junk junk"):
        with pytest.raises(FormatError):
            llmzip.decompress(blob + tail, model=tiny_model, threads=1)


def test_cat_then_decompress_on_the_command_line(tiny_env, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(TEXT[:120])
    b.write_bytes(TEXT[120:300])
    for f in (a, b):
        assert invoke(["compress", "--context", "16", str(f)]).exit_code == 0
    both = tmp_path / "both.llmz"
    both.write_bytes((tmp_path / "a.llmz").read_bytes() + (tmp_path / "b.llmz").read_bytes())
    r = invoke(["-dc", str(both)])
    assert r.exit_code == 0 and r.stdout_bytes == TEXT[:300]
    assert invoke(["-t", str(both)]).exit_code == 0
    assert "member 2" in invoke(["info", str(both)]).stdout


def test_usage_errors_are_one_line(tiny_env, tmp_path):
    packed = tmp_path / "x.llmz"
    packed.write_bytes(llmzip.compress(b"abc"))
    for argv in (["-t", "-c", str(packed)], ["--bogus"], ["compress", "--streams", "0", "x"]):
        r = invoke(argv)
        assert r.exit_code == 2
        one_line_error(r.stderr)


def test_max_size_refuses_larger_frames(tiny_env, tmp_path):
    path = tmp_path / "x"
    path.write_bytes(TEXT[:200])
    assert invoke(["compress", "--frame-size", "64", "--context", "16", str(path)]).exit_code == 0
    packed = str(tmp_path / "x.llmz")
    r = invoke(["-t", "--max-size", "32", packed])
    assert r.exit_code == 1 and "more than --max-size 32" in r.stderr
    one_line_error(r.stderr)
    for size in ("64", "1K", "1MiB", "2g"):
        assert invoke(["-t", "--max-size", size, packed]).exit_code == 0, size
    r = invoke(["-t", "--max-size", "lots", packed])
    assert r.exit_code == 2
    one_line_error(r.stderr)
