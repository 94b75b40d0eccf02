"""The worker imports only the standard library, cloudpickle and itself; the API is pinned."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import discodsl
from discodsl.jobpack import runtime_files

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


def test_worker_imports_from_a_job_home_without_pydantic_or_requests(tmp_path: Path) -> None:
    """What a node gets (the jobhome's files) imports with pydantic and requests unimportable."""
    for name, data in runtime_files(sys.version_info[:2]).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    script = BLOCKER + "import discodsl.worker, cloudpickle\nprint(discodsl.worker.__file__)\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "ok"
    assert lines[1].startswith(str(tmp_path)), "imported the installed package, not the job home's"


def test_public_api_is_pinned() -> None:
    assert discodsl.__all__ == sorted(discodsl.__all__)
    assert discodsl.__all__ == [
        "ClientError",
        "DataError",
        "DiscoDSLError",
        "Job",
        "JobDead",
        "JobError",
        "JobOptions",
        "JobpackError",
        "PicklingError",
        "ProtocolError",
        "Results",
        "Retry",
        "SettingsError",
        "Stage",
        "StageError",
        "TaskFailed",
        "count",
        "job",
        "map",
        "reduce",
        "stage",
        "status",
    ]
    for name in discodsl.__all__:
        assert hasattr(discodsl, name)
