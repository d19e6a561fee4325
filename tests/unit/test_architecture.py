"""The layers of docs/architecture.md hold: import-linter's contracts (pyproject.toml), zero import cycles
counting every import statement (also inside functions and under TYPE_CHECKING), and a config layer that
loads no ML library."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def module_files(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under `src`."""
    found = {}
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module an import statement anywhere in `tree` names (`from a import b` names `a.b` too)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)


def import_graph(src: Path, root: str = "lmtune") -> dict[str, set[str]]:
    """module -> the project modules it imports. Importing `a.b.c` also imports the packages `a.b` and
    `a`, except the importer's own packages (which Python always initialises before the importer)."""
    files = module_files(src)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        own = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
        edges = graph.setdefault(module, set())
        for name in _imported_names(ast.parse(path.read_text()), module, path.name == "__init__.py"):
            while name and name.split(".")[0] == root:
                if name in files and name != module and name not in own:
                    edges.add(name)
                name = name.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph(SRC)
    assert len(graph) > 100 and sum(map(len, graph.values())) > 300  # the whole package was read
    assert cycles(graph) == []


def test_the_cycle_check_finds_cycles(tmp_path: Path) -> None:
    """A planted cycle through a function-level import, a TYPE_CHECKING import and a package __init__."""
    pkg = tmp_path / "lmtune"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from lmtune.sub import a\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from lmtune import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lmtune.c\n")
    (pkg / "c.py").write_text("from lmtune.sub.a import f\n")  # imports lmtune.sub (its __init__) too
    (pkg / "d.py").write_text("from .c import f\n")  # relative, not in a cycle
    graph = import_graph(tmp_path)
    assert graph["lmtune.d"] == {"lmtune.c"}
    assert cycles(graph) == [["lmtune.b", "lmtune.c", "lmtune.sub", "lmtune.sub.a"]]


def test_import_contracts_hold() -> None:
    """The layers and the pure config layer, as `make lint` checks them (pyproject's [tool.importlinter]).
    In a separate process: import-linter's CLI configures logging with `disable_existing_loggers`, which
    would silence lmtune's loggers for every later test of this session."""
    code = (
        "import sys\n"
        "from importlinter.cli import lint_imports\n"
        f"config = {str(ROOT / 'pyproject.toml')!r}\n"
        "sys.exit(lint_imports(config_filename=config, no_cache=True, no_logo=True))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


def test_config_loads_no_ml_library() -> None:
    """Reading and validating a run config imports neither torch nor transformers (nor any stage)."""
    code = (
        "import json, sys\n"
        "from lmtune.config import loader\n"
        "from lmtune.config.run import RunConfig\n"
        f"loader.load(RunConfig, {str(ROOT / 'configs' / 'sft_lora.yaml')!r}, [])\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "transformers", "peft", "trl", "datasets")]
    assert heavy == []
    stages = {m.split(".")[1] for m in loaded if m.startswith("lmtune.")}
    assert stages <= {"config", "errors"}, stages


def test_causal_lms_are_loaded_in_one_place() -> None:
    """`from_pretrained` of a causal LM is called in `lmtune.runtime.load` only (`causal_lm`)."""
    callers = set()
    for module, path in module_files(SRC).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_pretrained"
                and (
                    (isinstance(node.func.value, ast.Name) and node.func.value.id == "AutoModelForCausalLM")
                    or isinstance(node.func.value, ast.Call)  # type(model).from_pretrained(...)
                )
            ):
                callers.add(module)
    assert callers == {"lmtune.runtime.load"}


SECTION_ONLY = (
    "lmtune.data",
    "lmtune.methods",
    "lmtune.evaluate",
    "lmtune.export",
    "lmtune.serve",
    "lmtune.monitor",
)
"""Stages that take their own config section (plus a small context such as `WeightsSpec`, a seed, a
run directory), never the whole run config. `runtime.rundir` stores the run config; `weights.view`
builds the final view from it; training and alignment read most sections."""


def test_stages_take_their_own_config_section() -> None:
    readers = set()
    for module, path in module_files(SRC).items():
        names = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)}
        names |= {
            alias.name
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom)
            for alias in n.names
        }
        if "RunConfig" in names:
            readers.add(module)
    section_only = {m for m in readers if m.startswith(SECTION_ONLY)}
    assert section_only == set(), section_only
    assert {m for m in readers if m.startswith("lmtune.runtime")} == {"lmtune.runtime.rundir"}
    assert "lmtune.weights.view" in readers and "lmtune.weights.load" not in readers
    # the check sees a stage that takes the whole config
    assert {"lmtune.train.sft", "lmtune.pipeline"} <= readers


def _function_level_import_blocks(tree: ast.AST) -> Iterator[list[ast.stmt]]:
    """Each run of consecutive import statements inside a function body."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            for field in ("body", "orelse", "finalbody"):
                stmts = getattr(inner, field, None)
                if not isinstance(stmts, list):
                    continue  # e.g. a lambda's body is one expression
                block: list[ast.stmt] = []
                for stmt in [*stmts, None]:
                    if isinstance(stmt, ast.Import | ast.ImportFrom):
                        block.append(stmt)
                    elif block:
                        yield block
                        block = []


def test_function_level_imports_say_why_they_are_deferred() -> None:
    """A function-level import only defers a heavy package, with a `# deferred: ...` comment on the line
    above its block (or on its own line); lmtune's own modules are imported at the top, except in the
    CLI, whose verbs defer the stages (and so torch and transformers)."""
    unexplained, lmtune_inside = [], []
    for module, path in module_files(SRC).items():
        lines = path.read_text().splitlines()
        for block in _function_level_import_blocks(ast.parse("\n".join(lines))):
            first, last = block[0].lineno, block[-1].end_lineno or block[-1].lineno
            said = "# deferred:" in lines[first - 2] or any(
                "# deferred" in lines[k - 1] for k in range(first, last + 1)
            )
            if not said:
                unexplained.append(f"{path.relative_to(ROOT)}:{first}")
            for stmt in block:
                names = (
                    [stmt.module or ""] if isinstance(stmt, ast.ImportFrom) else [a.name for a in stmt.names]
                )
                if any(n.split(".")[0] == "lmtune" for n in names) and not module.startswith("lmtune.cli"):
                    lmtune_inside.append(f"{path.relative_to(ROOT)}:{stmt.lineno}")
    assert unexplained == []
    assert lmtune_inside == []


def test_modules_stay_small() -> None:
    """No module over 400 lines (docs/architecture.md: a module past ~400 lines is a smell)."""
    long = {
        str(path.relative_to(ROOT)): n
        for path in module_files(SRC).values()
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert long == {}


def test_data_is_in_subpackages() -> None:
    """The data stage is grouped by what it holds; only the stage's spine stays at its top."""
    data = SRC / "lmtune" / "data"
    packages = sorted(p.name for p in data.iterdir() if (p / "__init__.py").is_file())
    assert packages == ["alignment", "curation", "encoding", "formats", "report", "synthesis"]
    top = sorted(p.stem for p in data.glob("*.py"))
    assert top == ["__init__", "fingerprint", "mixture", "prepare", "records", "split", "storage"]


def test_test_files_have_unique_names() -> None:
    """pytest imports test files by base name (rootdir mode, no packages): two files of one name make a
    fresh run fail at collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
