"""Regenerate the golden jobpacks: ``.venv/bin/python tests/golden/make_jobpacks.py``.

Each golden is built from fixed fake files, not from the real worker runtime, so
it changes only when the bytes :mod:`discodsl.jobpack` writes change; then rerun
this script and review the diff (``<name>.json`` is the readable side). The two
goldens use every grouping between them. tests/test_jobpack.py imports GOLDENS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from discodsl.jobhome import build_jobhome
from discodsl.jobpack import JobPack, describe, encode, make_jobdict

HERE = Path(__file__).resolve().parent

FILES = {
    "worker": b'#!/bin/sh\n# golden launcher\nexec python3.11 -u -m discodsl.worker "$@"\n',
    "discodsl/__init__.py": b"",
    "discodsl/worker/__init__.py": b'"""A stand-in for the worker runtime."""\n',
    "discodsl/worker/__main__.py": b"raise SystemExit(0)\n",
    "cloudpickle/__init__.py": b"# a stand-in for cloudpickle\n",
}


def map_reduce() -> JobPack:
    """Word count's shape: split map, group_label reduce, three raw inputs."""
    jobdict = make_jobdict(
        pipeline=[("map", "split", False), ("reduce", "group_label", False)],
        inputs=[
            (0, 0, ["raw://alpha%0Abeta"]),
            (0, 0, ["raw://gamma"]),
            (0, 11, ["http://127.0.0.1:8989/a", "http://127.0.0.2:8989/a"]),
        ],
        prefix="golden_map_reduce",
        owner="golden@host",
    )
    return JobPack(
        jobdict=jobdict, jobenvs={}, jobhome=build_jobhome(FILES), jobdata=b"\x80\x05stage"
    )


def four_stages() -> JobPack:
    """The other groupings, a concurrent stage, save_results, max_cores and jobenvs."""
    jobdict = make_jobdict(
        pipeline=[
            ("map", "split", False),
            ("all", "group_all", True),
            ("node", "group_node", False),
            ("node_label", "group_node_label", False),
        ],
        inputs=[(1, 5, ["raw://one"]), (2, 0, ["tag://golden:data"])],
        prefix="golden_four",
        owner="golden@host",
        scheduler={"max_cores": 4},
        save_results=True,
    )
    return JobPack(
        jobdict=jobdict,
        jobenvs={"DISCODSL_GOLDEN": "1", "LC_ALL": "C"},
        jobhome=build_jobhome({**FILES, "lib/helpers.py": b"def double(x):\n    return 2 * x\n"}),
        jobdata=bytes(range(256)),
    )


GOLDENS: dict[str, Callable[[], JobPack]] = {"map-reduce": map_reduce, "four-stages": four_stages}


def main() -> None:
    for name, build in GOLDENS.items():
        pack = build()
        (HERE / f"{name}.jobpack").write_bytes(encode(pack))
        (HERE / f"{name}.json").write_text(json.dumps(describe(pack), indent=1) + "\n")
        print(f"wrote {name}.jobpack and {name}.json")


if __name__ == "__main__":
    main()
