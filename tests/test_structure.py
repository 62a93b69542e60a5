"""The shape of the package (issues 24 and 43): subpackages by concept whose imports run one way,
cli -> codec -> model and mixing -> engine -> numeric, with format beside them (imported from
above, importing only llmzip.errors), no import circle among the modules and at most
:data:`FLOORS` imports on the longest chain, counting the imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmzip"

# What each subpackage may import besides itself and the top-level modules (errors, cache,
# progress). engine and mixing never import each other; format imports only errors.
ALLOWED = {
    "cli": {"codec", "model", "mixing", "engine", "numeric", "format"},
    "codec": {"model", "mixing", "engine", "numeric", "format"},
    "model": {"engine", "numeric", "format"},
    "mixing": {"numeric", "format"},
    "engine": {"numeric", "format"},
    "numeric": set(),
    "format": set(),
}
TOP = {"errors", "cache", "progress"}
FORMAT_MAY = {"llmzip.errors"}
# The arithmetic of formats 1-2, each behind one boundary: who may reach it.
LEGACY = {"llmzip.engine.legacy": {"llmzip.model.load"},
          "llmzip.mixing.legacy": {"llmzip.codec.stream"}}
FLOORS = 8  # imports on the longest chain (python -m llmzip down to the numba set-up)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the llmzip modules it imports (``from llmzip.x import y`` counts as
    llmzip.x.y where that is a module, else llmzip.x; ``from llmzip import __version__``
    imports no module; imports under ``if TYPE_CHECKING:`` are not counted)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = graph.setdefault(name, set())
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test).endswith("TYPE_CHECKING")
                       for n in ast.walk(block)}  # (annotations only: never executed)
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "llmzip":
                    continue
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    if sub in modules or node.module != "llmzip":  # (llmzip's own names, such
                        found.add(sub if sub in modules else node.module)  # as __version__: no)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("llmzip."))
    return {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else "top"


def test_no_import_circle():
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            assert state.get(dep) != 1, " -> ".join([*path, dep])
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert len(graph) > 40  # the walk saw the package and its subpackages


def _longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest import chain (modules, top first) of an acyclic graph."""
    best: dict[str, list[str]] = {}

    def chain(module: str) -> list[str]:
        if module not in best:
            below = max((chain(d) for d in sorted(graph[module])), key=len, default=[])
            best[module] = [module, *below]
        return best[module]

    return max((chain(m) for m in sorted(graph)), key=len)


def test_few_floors():
    """The package is at most FLOORS imports deep: a module sits on few others."""
    longest = _longest_chain(_imports())
    assert len(longest) - 1 <= FLOORS, " -> ".join(longest)
    assert len(longest) - 1 >= 4  # (the walk saw the chains)


def test_imports_run_one_way():
    wrong = []
    for module, deps in _imports().items():
        if module in ("llmzip", "llmzip.__main__"):
            continue  # the package's facade and entry point
        src = _package_of(module)
        for dep in deps:
            dst = _package_of(dep)
            for old, users in LEGACY.items():
                if dep.startswith(old) and not module.startswith(old) and module not in users:
                    wrong.append(f"{module} -> {dep} ({old} is reached only from {users})")
            if src == dst or dep in ("llmzip.errors",):
                continue
            if src == "top":
                wrong.append(f"{module} -> {dep} (a top-level module imports no subpackage)")
            elif src == "format":
                if dep not in FORMAT_MAY:
                    wrong.append(f"{module} -> {dep} (format imports only llmzip.errors)")
            elif dst != "top" and dst not in ALLOWED[src]:
                wrong.append(f"{module} -> {dep} ({src} may not import {dst})")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_module_has_a_home():
    """Only errors, cache and progress (and the package's entry points) stay at the top."""
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert top == TOP
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(ALLOWED)


def test_every_engine_has_the_interface():
    """Llama calls an engine only through interface.StepEngine; both engines have all of it
    (the exact one also attention_steps, which it says it runs ahead with)."""
    import inspect

    from llmzip.engine.exact import Engine
    from llmzip.engine.interface import StepEngine
    from llmzip.engine.legacy.engine import LegacyEngine

    wanted = {n for n, v in vars(StepEngine).items() if inspect.isfunction(v)}
    assert {"build", "new_cache", "begin", "embed", "normed_linear", "linear", "silu",
            "attention"} <= wanted
    for engine in (Engine, LegacyEngine):
        assert all(callable(getattr(engine, n, None)) for n in wanted), engine
        assert engine.runs_ahead == hasattr(engine, "attention_steps"), engine
