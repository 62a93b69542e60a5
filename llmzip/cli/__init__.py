"""The command line: click commands (main.py), their options (options.py), the file policy
(files.py), ``llmzip info`` (info.py) and ``llmzip bench`` (bench.py, report.py). Nothing below
imports it."""
