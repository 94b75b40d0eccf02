"""The ``discodsl`` command line, called as ``main([...])`` against the test master.

Outputs are read with capsys; errors must end in one ``discodsl: error:``
line (plus a ``hint:`` line where there is a fix) and a non-zero status.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from discodsl.cli import main
from tests.disco_master import DiscoMaster
from tests.http_replay import closed_port

WORDCOUNT = "tests.jobs:wordcount"
INPUTS = ["raw://a b c", "raw://c a c"]
RECORDS = {"a": "2", "b": "1", "c": "3"}


def run(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 0) -> tuple[str, str]:
    """``main(argv)``, checked to return ``status``; (stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == status, f"discodsl {' '.join(argv)} -> {code}\n{out}\n{err}"
    return out, err


def records(out: str) -> dict[str, str]:
    return dict(line.split("\t") for line in out.splitlines())


def one_error(err: str, *words: str) -> list[str]:
    """The error and hint lines: exactly one error line, holding ``words``."""
    lines = [line for line in err.splitlines() if line.startswith(("discodsl: error:", "hint:"))]
    assert [line.startswith("discodsl: error:") for line in lines][:1] == [True], err
    assert sum(line.startswith("discodsl: error:") for line in lines) == 1, err
    for word in words:
        assert word in lines[0], err
    return lines


def test_python_m_discodsl_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "discodsl", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: discodsl")
    for command in (
        "run",
        "jobpack",
        "submit",
        "jobs",
        "status",
        "events",
        "wait",
        "results",
        "kill",
        "purge",
        "ddfs",
    ):
        assert f"    {command} " in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--help"],
        ["ddfs", "push", "--help"],
        ["jobpack", "show", "--help"],
        ["events", "--help"],
    ],
)
def test_help_everywhere(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    out, _ = run(capsys, *argv)
    assert out.startswith("usage: discodsl")


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["run"],
        ["run", "no_colon"],
        ["run", "--inline", "--master", "http://x", "m:job"],
        ["jobs", "--bogus"],
        ["ddfs"],
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    _, err = run(capsys, *argv, status=2)
    assert "usage: discodsl" in err


def test_run_inline_and_local_write_records(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, _ = run(capsys, "run", "--inline", WORDCOUNT, *INPUTS)
    assert records(out) == RECORDS
    target = tmp_path / "out.tsv"
    out, _ = run(
        capsys, "run", "--local", "--partitions", "1", WORDCOUNT, *INPUTS, "-o", str(target)
    )
    assert out == "" and records(target.read_text()) == RECORDS


def test_a_jobs_whole_life(cluster_env: DiscoMaster, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = run(capsys, "run", WORDCOUNT, *INPUTS)  # DISCO_MASTER is set: the cluster
    assert records(out) == RECORDS
    out, _ = run(capsys, "--json", "jobs")
    [job] = json.loads(out)
    name = job["name"]
    assert job["status"] == "ready" and name.startswith("wordcount@")
    out, _ = run(capsys, "jobs")
    assert out.split()[0] == "ready" and out.split()[-1] == name
    out, _ = run(capsys, "status", "@")
    assert out.startswith(f"{name}: ready") and "words            2/2 done" in out
    out, _ = run(capsys, "status", "@?wordcount", "--json")
    assert json.loads(out)["active"] == "ready" and json.loads(out)["name"] == name
    out, _ = run(capsys, "events", name)
    assert out.splitlines()[0].endswith("New job initialized!")
    assert "READY: Job done in" in out.splitlines()[-1]
    out, _ = run(capsys, "events", "@", "--json", "--follow")
    assert json.loads(out.splitlines()[-1])[2].startswith("READY: Job done")
    out, _ = run(capsys, "wait", "@")
    assert out.startswith(f"{name}: ready")
    out, _ = run(capsys, "results", "@")
    assert records(out) == RECORDS
    out, _ = run(capsys, "results", name, "--json")
    assert {k: v for k, v in map(json.loads, out.splitlines())} == {"a": 2, "b": 1, "c": 3}
    out, _ = run(capsys, "purge", "@")
    assert out.strip() == f"purged {name}"
    _, err = run(capsys, "status", name, status=1)
    one_error(err, name)
    out, _ = run(capsys, "jobs")
    assert out == ""


def test_jobpack_build_show_submit_then_kill(
    cluster_env: DiscoMaster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pack = tmp_path / "sleeper.jobpack"
    run(capsys, "jobpack", "build", "tests.cluster_jobs:sleeper", "raw://x", "-o", str(pack))
    out, _ = run(capsys, "jobpack", "show", str(pack))
    shown = json.loads(out)
    assert shown["jobdict"]["prefix"] == "sleeper" and shown["size"] == pack.stat().st_size
    assert shown["jobdict"]["inputs"] == [[0, 0, ["raw://x"]]]
    out, _ = run(capsys, "submit", str(pack))
    name = out.strip()
    assert name.startswith("sleeper@")
    out, _ = run(capsys, "status", name, "--json")
    assert json.loads(out)["active"] == "active"

    follow: dict[str, int] = {}
    thread = threading.Thread(target=lambda: follow.update(code=main(["events", "-f", "@"])))
    thread.start()
    time.sleep(0.5)
    assert main(["kill", "@"]) == 0
    thread.join(timeout=20)
    assert follow == {"code": 0}  # --follow ends when the job does
    printed = capsys.readouterr().out.splitlines()
    assert f"killed {name}" in printed
    assert any(line.endswith("New job initialized!") for line in printed)  # by --follow
    _, err = run(capsys, "wait", name, status=1)
    lines = one_error(err, name, "is dead without a task error", "killed")
    assert lines[1] == f"hint: see what happened with `discodsl events {name}`"


def test_ddfs_push_ls_cat_rm(
    cluster_env: DiscoMaster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("first\n")
    two.write_text("second\n")
    out, _ = run(capsys, "ddfs", "push", "data:lines", str(one), str(two))
    urls = out.split()
    assert len(urls) == 2 and all(u.startswith("disco://localhost/ddfs/") for u in urls)
    out, _ = run(capsys, "ddfs", "ls")
    assert out.split() == ["data:lines"]
    out, _ = run(capsys, "--json", "ddfs", "ls", "data")
    assert json.loads(out) == ["data:lines"]
    out, _ = run(capsys, "ddfs", "cat", "data:lines")
    assert sorted(out.splitlines()) == ["first", "second"]
    out, _ = run(capsys, "ddfs", "cat", urls[1])
    assert out == "second\n"
    out, _ = run(capsys, "ddfs", "rm", "tag://data:lines")
    assert out.strip() == "deleted tag://data:lines"
    out, _ = run(capsys, "ddfs", "ls")
    assert out.strip() == ""
    _, err = run(capsys, "ddfs", "cat", "data:lines", status=1)
    one_error(err, "no DDFS tag named 'data:lines'")


def test_unreachable_master(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCODSL_RETRIES", "0")
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        _, err = run(capsys, "--master", url, "jobs", status=1)
    _, hint = one_error(err, "could not reach the Disco master", url)
    assert hint.startswith("hint: is the master running?") and url in hint


def test_refused_jobpack(
    cluster_env: DiscoMaster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jobpack"
    bad.write_bytes(b"\xd5\xc0\x00\x02 not a jobpack")
    _, err = run(capsys, "submit", str(bad), status=1)
    _, hint = one_error(err, "the master refused the job: Job failed to start:")
    assert "jobpack show" in hint
    _, err = run(capsys, "jobpack", "show", str(bad), status=1)
    one_error(err, "header")


def test_dead_job(cluster_env: DiscoMaster, capsys: pytest.CaptureFixture[str]) -> None:
    _, err = run(capsys, "run", "tests.cluster_jobs:exploding", "raw://x", status=1)
    error, hint = one_error(err, "failed in task explode:0", "KeyError", "no entry for 'x'")
    name = error.split("'")[1]
    assert hint == f"hint: see the worker's traceback with `discodsl events {name}`"
    out, _ = run(capsys, "events", name)
    assert "KeyError: \"no entry for 'x'\"" in out and "in explode" in out


def test_ddfs_cat_without_a_binary_stdout(
    cluster_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a notebook sys.stdout has no .buffer: cat still prints the blob."""
    import contextlib
    import io

    source = tmp_path / "blob.txt"
    source.write_text("hello from a blob\n")
    assert main(["ddfs", "push", "test:catme", str(source)]) == 0
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        assert main(["ddfs", "cat", "test:catme"]) == 0
    assert captured.getvalue() == "hello from a blob\n"
