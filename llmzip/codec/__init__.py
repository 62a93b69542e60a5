"""Bytes to a file and back: frames and the shared encode/decode loop (stream.py), the per-frame
predictor (predictor.py), the range coder (rangecoder.py), frames in parallel (parallel.py), the
settings (settings.py) and the start-up self-check of the kernels (selfcheck.py)."""
