"""The worker runtime imports only the standard library, cloudpickle and itself; the API is pinned."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import discodsl

WORKER = Path(discodsl.__file__).parent / "worker"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_worker_modules_import_only_stdlib_cloudpickle_and_itself() -> None:
    for path in sorted(WORKER.glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            allowed = top in sys.stdlib_module_names or top == "cloudpickle"
            assert allowed or name.startswith("discodsl.worker"), f"{path.name} imports {name}"


BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pydantic", "pydantic_settings", "requests", "tqdm"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
import discodsl.worker.runtime, discodsl.worker.execute, discodsl.worker.inputs
import discodsl.worker.records, discodsl.worker.protocol, discodsl.worker.groupby
print("ok")
"""


def test_worker_imports_without_pydantic_or_requests() -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_public_api_is_pinned() -> None:
    assert discodsl.__all__ == sorted(discodsl.__all__)
    assert discodsl.__all__ == [
        "ClientError", "DataError", "DiscoDSLError", "Job", "JobDead", "JobError", "JobOptions",
        "JobpackError", "PicklingError", "ProtocolError", "Results", "SettingsError", "Stage",
        "StageError", "TaskFailed", "count", "job", "map", "reduce", "stage", "status",
    ]
    for name in discodsl.__all__:
        assert hasattr(discodsl, name)
