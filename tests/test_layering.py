"""The worker imports only the standard library, cloudpickle and itself; the API is pinned.

The import rule is checked once, on what a node gets: a real jobhome, extracted. Every
shipped discodsl module is read for its imports (function-level ones too), and a fresh
interpreter imports every module of the jobhome and lists what came in with them.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import discodsl
from discodsl.jobhome import build_jobhome, extract_jobhome, runtime_files
from tests.interpreters import python_output

SHIPPED_TOPS = {"cloudpickle", "discodsl"}


def _allowed(module: str) -> bool:
    """Whether worker code may import ``module``: the stdlib, cloudpickle, the worker."""
    top = module.split(".")[0]
    worker = module == "discodsl.worker" or module.startswith("discodsl.worker.")
    return top in sys.stdlib_module_names or top == "cloudpickle" or worker


def _package_of(path: Path, home: Path) -> list[str]:
    """The package ``path`` (a module file under ``home``) belongs to, as name parts."""
    parts = list(path.relative_to(home).with_suffix("").parts)
    return parts if parts[-1] == "__init__" else parts[:-1]


def _imports(path: Path, home: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it, relative imports made absolute."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            package = _package_of(path, home)
            base = package[: len(package) - node.level + 1] if node.level else []
            names.add(".".join([*base, node.module] if node.module else base))
    return names


# Imports every module of the jobhome in cwd (the launcher's __main__ aside: it runs the
# worker), then prints, for what start-up had not loaded, each module's name and file.
IMPORT_ALL = """
import importlib, json, pathlib, sys
sys.path.insert(0, ".")
before = set(sys.modules)
for path in sorted(pathlib.Path(".").glob("**/*.py")):
    if path.name != "__main__.py":
        importlib.import_module(".".join(path.with_suffix("").parts).removesuffix(".__init__"))
print(json.dumps({name: getattr(module, "__file__", None)
                  for name, module in sys.modules.items() if name not in before}))
"""


def test_the_jobhome_imports_only_stdlib_cloudpickle_and_the_worker(tmp_path: Path) -> None:
    extract_jobhome(build_jobhome(runtime_files(sys.version_info[:2])), tmp_path)
    sources = sorted((tmp_path / "discodsl").glob("**/*.py"))
    assert len(sources) > 10, sources
    for path in sources:
        for name in _imports(path, tmp_path):
            assert _allowed(name), f"{path.relative_to(tmp_path)} imports {name}"
    loaded: dict[str, str | None] = json.loads(python_output(IMPORT_ALL, tmp_path, "-I"))
    assert {"discodsl.worker.runtime", "cloudpickle"} <= set(loaded)
    for name, file in loaded.items():
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in SHIPPED_TOPS, f"the worker loaded {name}"
        if top in SHIPPED_TOPS:  # from the jobhome, not from this machine's installation
            assert file and Path(file).resolve().is_relative_to(tmp_path.resolve()), (name, file)


# What a worker imports is copied by every fork of the local runner's zygote, and loaded by
# every task a Disco node starts: these come only with the data that needs them.
WORKER_LAZY = ("decimal", "fractions", "gzip", "bz2")
WORKER_LOAD = """
import json, sys
from discodsl.worker import forkserver, runtime
from discodsl.worker.partition import default_partition
loaded = sorted(set(sys.modules) & set({lazy!r}))
from decimal import Decimal
from fractions import Fraction
same = [default_partition(Decimal("1.0"), 7) == default_partition(1, 7),
        default_partition(Fraction(1, 2), 7) == default_partition(0.5, 7)]
print(json.dumps([loaded, same]))
"""


def test_a_worker_loads_decimal_fractions_and_compression_only_when_used(
    tmp_path: Path,
) -> None:
    extract_jobhome(build_jobhome(runtime_files(sys.version_info[:2])), tmp_path)
    printed = python_output(WORKER_LOAD.format(lazy=WORKER_LAZY), tmp_path, "-S")
    assert json.loads(printed) == [[], [True, True]]


def test_public_api_is_pinned() -> None:
    assert discodsl.__all__ == sorted(discodsl.__all__)
    assert discodsl.__all__ == [
        "ClientError",
        "DataError",
        "DiscoDSLError",
        "InputRunFailed",  # what a chained run's timeout= and failed input raise (DD F4)
        "Job",
        "JobActive",
        "JobDead",
        "JobError",
        "JobOptions",
        "JobpackError",
        "MalformedRecord",
        "PicklingError",
        "ProtocolError",
        "RedefinedStageWarning",
        "Results",
        "Retry",
        "Run",
        "SettingsError",
        "Stage",
        "StageError",
        "TaskFailed",
        "ThisTask",  # what this_task() gives stage code (DZ F3)
        "UnstableHashWarning",
        "count",
        "job",
        "map",
        "readers",
        "reduce",
        "stage",
        "status",
        "this_task",
    ]
    for name in discodsl.__all__:
        assert hasattr(discodsl, name)


def test_the_error_tree_drawn_in_errors_is_the_class_tree() -> None:
    """errors.py's docstring draws every error class under its base (a class added, moved
    or renamed without redrawing fails here)."""
    import re

    from discodsl import errors
    from discodsl.worker import errors as worker_errors

    drawn: dict[str, str] = {}
    parents: list[tuple[int, str]] = []  # (column, name) of the lines above, innermost last
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"\s*(?:[│ ]*[├└]── )?([A-Z][A-Za-z]+Error|[A-Z][A-Za-z]+) {2,}", line)
        if not found or not line.startswith("    "):
            continue
        column = found.start(1)
        while parents and parents[-1][0] >= column:
            parents.pop()
        drawn[found.group(1)] = parents[-1][1] if parents else ""
        parents.append((column, found.group(1)))
    classes = {
        cls.__name__: cls
        for module in (errors, worker_errors)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, errors.DiscoDSLError)
    }
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        bases = [b.__name__ for b in classes[name].__bases__ if b is not Exception]
        assert bases == ([parent] if parent else []), name
