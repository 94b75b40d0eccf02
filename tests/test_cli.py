"""The ``discodsl`` command line, called as ``main([...])`` against the test master.

Outputs are read with capsys; errors must end in one ``discodsl: error:``
line (plus a ``hint:`` line where there is a fix) and a non-zero status.
"""

from __future__ import annotations

import argparse
import ast
import errno
import io
import json
import math
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discodsl import builder, cli
from discodsl.cli import _hint, main
from discodsl.client import Master
from discodsl.ddfs import DDFS
from discodsl.errors import (
    BadAnswer,
    ClientError,
    JobDead,
    JobpackRefused,
    NoSuchJob,
    TagNotFound,
    TaskFailed,
)
from tests import cluster_jobs, jobs
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


@pytest.mark.usefixtures("removed_cwd")
def test_commands_run_in_a_working_directory_that_was_removed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Every command, --version included, failed with a bare FileNotFoundError.
    job_file = tmp_path / "lines_job.py"
    job_file.write_text(
        "from discodsl import job, map\n"
        "@map\ndef lines(line):\n    yield line, 1\n"
        "@job(partitions=None)\ndef counted():\n    return [lines]\n"
    )
    assert run(capsys, "--version")[0].startswith("discodsl ")
    out, _ = run(capsys, "run", f"{job_file}:counted", "--inline", "raw://a")
    assert records(out) == {"a": "1"}
    _, err = run(capsys, "run", "lines_job:counted", "--inline", "raw://a", status=1)
    one_error(err, "the working directory was removed", "FILE.py:JOB")
    # A relative job file: a traceback of Path.resolve()'s FileNotFoundError.
    _, err = run(capsys, "run", "lines_job.py:counted", "--inline", "raw://a", status=1)
    one_error(err, "the working directory was removed", "absolute path")


def test_a_job_files_path_may_start_with_a_tilde_as_an_inputs_may(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "home_job.py").write_text(
        "from discodsl import job, map\n"
        "@map\ndef lines(line):\n    yield line, 1\n"
        "@job(partitions=None)\ndef counted():\n    return [lines]\n"
    )
    out, _ = run(capsys, "run", "~/home_job.py:counted", "--inline", "raw://a")
    assert records(out) == {"a": "1"}


def test_a_job_file_under_a_directory_with_a_colon_in_its_name_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # "not MODULE:JOB": the spec was split at its first ':'.
    where = tmp_path / "2026-12-06T10:00"
    where.mkdir()
    (where / "stamped_job.py").write_text(
        "from discodsl import job, map\n"
        "@map\ndef lines(line):\n    yield line, 1\n"
        "@job(partitions=None)\ndef counted():\n    return [lines]\n"
    )
    out, _ = run(capsys, "run", f"{where / 'stamped_job.py'}:counted", "--inline", "raw://a")
    assert records(out) == {"a": "1"}


def test_a_jobhome_that_cannot_be_kept_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk left a .jobhome-XXXX file in the cache for each build.
    def full(source: str, target: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builder.os, "replace", full)
    builder._keep(tmp_path / "jobhome-x.zip", b"home")
    assert list(tmp_path.iterdir()) == []


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
        "nodeinfo",
        "config",
        "settings",
        "stageresults",
        "jobdict",
        "ddfs",
        "cache",
    ):
        assert re.search(rf"^    {command}\s", done.stdout, re.MULTILINE), command


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from discodsl import __version__

    out, _ = run(capsys, "--version")
    assert out == f"discodsl {__version__} (for Disco 0.5.4)\n"


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


@pytest.mark.parametrize(
    "argv", [["wait", "@", "--bogus"], ["ddfs", "ls", "--bogus"], ["run", "m:job", "in", "-x"]]
)
def test_an_unknown_option_is_told_with_its_commands_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    _, err = run(capsys, *argv, status=2)
    command = " ".join(word for word in argv[:2] if word.isalpha())
    assert err.startswith(f"usage: discodsl {command} ")
    assert f"discodsl {command}: error: unrecognized arguments: {argv[-1]}" in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (
            ["run", WORDCOUNT, "raw://a", "--partiton", "4"],
            "(--partiton: did you mean --partitions?)",
        ),
        (["rnu", WORDCOUNT], "invalid choice: 'rnu' (choose from"),
        (["rnu", WORDCOUNT], "(did you mean run?)"),
        (["--mastr", "http://127.0.0.1:1", "jobs"], "(--mastr: did you mean --master?)"),
        # The job's place took the option's value (probe CW F9).
        (["run", "--partiton", "3", WORDCOUNT, "raw://a"], "(--partiton: did you mean"),
        (["--partitions", "3", "run", WORDCOUNT], "(--partitions is an option of discodsl run"),
    ],
)
def test_a_misspelt_option_or_command_is_told_the_name_meant(
    capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    # The Python API says the name meant; the command line did not, and a misspelt option
    # before the command had its value blamed (probe CV F1).
    _, err = run(capsys, *argv, status=2)
    assert said in err


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


@pytest.mark.parametrize("where", ["--inline", "--local"])
def test_run_here_needs_no_master_of_the_settings_file(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    # A computed DISCO_MASTER, which a local run needs not, failed --local and --inline
    # (probe CS F21).
    settings = tmp_path / "settings.py"
    settings.write_text('import socket\nDISCO_MASTER = "http://%s:8989" % socket.gethostname()\n')
    monkeypatch.setenv("DISCO_SETTINGS_FILE", str(settings))
    out, _ = run(capsys, "run", where, WORDCOUNT, *INPUTS)
    assert records(out) == RECORDS


def test_a_jobs_whole_life(cluster_env: str, capsys: pytest.CaptureFixture[str]) -> None:
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
    _, err = run(capsys, "status", "@?nosuchname", status=1)
    assert one_error(err, "has no job whose name contains 'nosuchname'")[1:] == [
        "hint: list the master's jobs with `discodsl jobs`"
    ]
    _, err = run(capsys, "status", "nosuchjob", status=1)
    assert one_error(err, "no job named 'nosuchjob'", "list jobs with `discodsl")[1:] == []
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
    for command in ("kill", "purge"):  # the master answers "ok" for a job it does not know
        _, err = run(capsys, command, name, status=1)
        one_error(err, name)
    out, _ = run(capsys, "jobs")
    assert out == ""


def test_cluster_facts_as_disco_prints_them(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """nodeinfo, config, stageresults and jobdict, as Disco's own CLI has them."""
    run(capsys, "run", WORDCOUNT, *INPUTS)
    out, _ = run(capsys, "nodeinfo")
    host, facts = out.splitlines()[0].split("\t")
    assert json.loads(facts)["connected"] is True
    out, _ = run(capsys, "--json", "nodeinfo")
    assert json.loads(out)[host]["blacklisted"] is False
    out, _ = run(capsys, "config")
    assert [line.split("\t")[0] for line in out.splitlines()] == [host]
    # How often the master retries a task, which no command showed (probe DK F4).
    out, _ = run(capsys, "settings")
    assert "max_failure_rate\t" in out and "accept_new_jobs\t" in out
    settings = json.loads(run(capsys, "--json", "settings")[0])
    assert set(settings) == {"max_failure_rate", "accept_new_jobs"}
    assert out.splitlines()[0] == f"max_failure_rate\t{settings['max_failure_rate']}"
    out, _ = run(capsys, "stageresults", "@", "-S", "words")
    assert out and all(line.startswith("dir://") for line in out.splitlines())
    out, _ = run(capsys, "--json", "stageresults", "@", "--stage", "total")
    assert all(replicas[0].startswith("dir://") for replicas in json.loads(out))
    out, _ = run(capsys, "jobdict", "@")
    assert json.loads(out)["prefix"] == "wordcount"
    _, err = run(capsys, "stageresults", "@", "-S", "nostage", status=1)
    # It said "the stage has not finished ... or there is no such job or stage" (DP F2).
    one_error(err, "has no stage 'nostage': its stages are words, total; write e.g. -S words")
    odd = cluster_jobs.odd_names.run(["raw://a"], mode="cluster", progress=False)
    _, err = run(capsys, "stageresults", odd.jobname, "-S", "nostage", status=1)
    one_error(err, "write e.g. -S 'a]b'")  # as the shell takes it (probe DR F2)


@pytest.mark.parametrize(
    ("stage", "written"),
    [("words", "-S words"), ("a;b", "-S 'a;b'"), ("$HOME", "-S '$HOME'"), ("-x", "--stage=-x")],
)
def test_a_stage_option_is_written_as_a_shell_and_argparse_take_it(
    stage: str, written: str
) -> None:
    # pasted, `-S -x` was argparse's "expected one argument" (probe DQ F9)
    from discodsl.cli.jobs import _stage_option
    from discodsl.cli.parser import build_parser

    assert _stage_option(stage) == written
    args = build_parser().parse_args(["stageresults", "JOB", *shlex.split(written)])
    assert args.stage == stage


def packed(version: int, jobdict: dict[str, Any]) -> bytes:
    """A jobpack of ``version`` holding ``jobdict``, as Disco's own library lays one out."""
    raw, envs, home = json.dumps(jobdict).encode(), b"{}", b"PK\x05\x06" + b"\0" * 18
    at = [128, 128 + len(raw), 128 + len(raw) + len(envs), 128 + len(raw) + len(envs) + len(home)]
    header = struct.pack(">HHIIII", 0xD5C0, version, *at)
    return header.ljust(128, b"\0") + raw + envs + home


CLASSIC = {"input": [["raw://a"]], "map?": True, "nr_reduces": 1, "prefix": "cn-classic"}
PIPELINE = {"prefix": "cn-pipe", "worker": "w", "owner": "o@h", "pipeline": [], "inputs": []}


@pytest.mark.parametrize("jobdict", [CLASSIC, PIPELINE], ids=["classic", "named-with-dash"])
def test_jobdict_shows_the_jobs_of_disco_own_library(
    cluster_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    jobdict: dict[str, Any],
) -> None:
    # A classic job's version-1 jobpack, and a pipeline job named with a "-" (which discodsl
    # builds none of), were refused by the rules for the jobpacks discodsl builds: the job
    # had run, and jobdict only shows it (probe CN F1).
    version = 1 if "input" in jobdict else 2
    monkeypatch.setattr(Master, "parameters", lambda self, name: packed(version, jobdict))
    out, _ = run(capsys, "jobdict", f"{jobdict['prefix']}@704:9a3b7:54583")
    assert json.loads(out) == jobdict


def test_hints_follow_the_error_type_not_its_words() -> None:
    args = argparse.Namespace()
    assert _hint(TagNotFound("gone", tag="t"), args) == "list the tags with `discodsl ddfs ls`"
    assert _hint(NoSuchJob("gone", jobname="j"), args).endswith("`discodsl jobs`")
    assert "jobpack show" in _hint(JobpackRefused("no", reason="r"), args)
    assert _hint(ClientError("no job named 'x'; could not reach"), args) == ""
    failed = TaskFailed("job 'other' failed", jobname="wordcount@1:2:3")
    assert _hint(failed, args).endswith("`discodsl events wordcount@1:2:3`")
    assert _hint(JobDead("dead", jobname="j@1"), args) == ""  # its messages name the events


def test_a_wait_that_lost_its_master_exits_1_not_as_timed_out(
    cluster_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A master that stopped answering a wait with no --timeout: 124 says "gave up while
    the job runs on", and a script that waits again on 124 looped on a master that was
    gone (probe CM F1)."""
    pack = tmp_path / "sleeper.jobpack"
    run(capsys, "jobpack", "build", "tests.cluster_jobs:sleeper", "raw://x", "-o", str(pack))
    out, _ = run(capsys, "submit", str(pack))
    status, polls = Master.status, []

    def gone_after_one(self: Master, jobname: str, timeout_ms: int = 0) -> Any:
        polls.append(jobname)
        if len(polls) > 1:
            raise BadAnswer("POST /disco/ctrl/get_results: the master failed (502 <html>)")
        return status(self, jobname, timeout_ms)

    monkeypatch.setattr(Master, "status", gone_after_one)
    _, err = run(capsys, "wait", out.strip(), status=1)
    assert f"lost track of job {out.strip()!r}" in err
    monkeypatch.setattr(Master, "status", status)
    run(capsys, "kill", out.strip())


def test_jobpack_build_show_submit_then_kill(
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pack = tmp_path / "sleeper.jobpack"
    _, err = run(
        capsys, "jobpack", "build", "tests.cluster_jobs:sleeper", "raw://x", "-o", str(pack)
    )
    assert err == f"{pack}: jobpack of 'sleeper', {pack.stat().st_size} bytes\n"
    # a prefix= names the master's jobs: said, as `discodsl jobs` lists them (probe DP S5)
    _, err = run(
        capsys, "jobpack", "build", "tests.cluster_jobs:prefixed_count", "raw://x", "-o", str(pack)
    )
    size = pack.stat().st_size
    assert err == f"{pack}: jobpack of 'chatty_count', its jobs dp_wc@..., {size} bytes\n"
    _, err = run(
        capsys, "jobpack", "build", "tests.cluster_jobs:sleeper", "raw://x", "-o", str(pack), "-q"
    )
    assert err == ""  # a notice, which cron would have mailed (probe DH F7)
    out, _ = run(capsys, "jobpack", "show", str(pack))
    shown = json.loads(out)
    assert shown["jobdict"]["prefix"] == "sleeper" and shown["size"] == pack.stat().st_size
    header = shown["jobdata_header"]  # the Python the job needs, to diagnose a node's
    assert header["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert header["job"] == "sleeper" and header["size"] > 0
    assert shown["jobdict"]["inputs"] == [[0, 0, ["raw://x"]]]
    out, _ = run(capsys, "submit", str(pack))
    name = out.strip()
    assert name.startswith("sleeper@")
    out, _ = run(capsys, "status", name, "--json")
    assert json.loads(out)["active"] == "active"
    # A wait that gives up exits 124, as `timeout` does: a script tells it from a failure.
    _, err = run(capsys, "wait", name, "--timeout", "0.2", status=124)
    assert f"job {name!r} is still active after" in err

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
    assert printed[-1].endswith("WARN: Job killed")  # written up to 2 s after the kill
    _, err = run(capsys, "wait", name, status=1)
    lines = one_error(err, name, "is dead without a task error", "killed")
    assert f"(all its events: `discodsl --master {cluster_env} events {name}`)" in lines[0]
    assert lines[1:] == []  # the message said it: no hint repeats it
    out, _ = run(capsys, "kill", name)
    assert out == f"{name} is dead: nothing to kill\n"
    # A run that gave up waiting while its job runs on exits 124 too (it exited 1, as a
    # job that failed: probe DH F9).
    _, err = run(
        capsys, "run", "tests.cluster_jobs:sleeper", "raw://x", "--timeout", "0.5", status=124
    )
    ran = re.search(r"job '(sleeper@[^']+)' is still active after", err)
    assert ran is not None, err
    run(capsys, "kill", ran[1])


def test_a_jobpack_over_an_earlier_jobs_results_reads_every_partition(
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `jobpack build` put a dir:// index into the jobpack as it was, which a master takes
    # for one data input: the job read the files of label 0 alone.
    first = jobs.wordcount.run(inputs=INPUTS, mode="cluster")
    assert len(first.record_urls()) > 1
    pack = tmp_path / "merge.jobpack"
    indexes = [replicas[0] for replicas in first.urls]
    run(capsys, "jobpack", "build", "tests.jobs:merge_counts", *indexes, "-o", str(pack))
    name = run(capsys, "submit", str(pack))[0].strip()
    run(capsys, "wait", name)
    out, _ = run(capsys, "results", name)
    assert sorted(out.splitlines()) == sorted(f"{k}\t{v}" for k, v in dict(first).items())


def test_a_jobpack_over_results_emptied_since_fails_its_job(
    damageable_cluster: Callable[[str], Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The files an index lists go into the jobpack with the sizes it gives (probe CW F19).
    first = jobs.wordcount.run(inputs=INPUTS, mode="cluster")
    pack = tmp_path / "merge.jobpack"
    indexes = [replicas[0] for replicas in first.urls]
    run(capsys, "jobpack", "build", "tests.jobs:merge_counts", *indexes, "-o", str(pack))
    damageable_cluster(first.listed_urls()[0][0]).write_bytes(b"")
    name = run(capsys, "submit", str(pack))[0].strip()
    _, err = run(capsys, "wait", name, status=1)
    assert re.search(r"is 0 bytes, where the index .* says \d+", err), err


def test_kill_and_purge_take_several_jobs_as_disco_did(
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # `disco purge J1 J2` purged both; `discodsl purge J1 J2` was a usage error.
    pack = tmp_path / "wordcount.jobpack"
    run(capsys, "jobpack", "build", WORDCOUNT, *INPUTS, "-o", str(pack))
    names = [run(capsys, "submit", str(pack))[0].strip() for _ in range(3)]
    for name in names:
        run(capsys, "wait", name)
    out, _ = run(capsys, "kill", *names)
    assert out.splitlines() == [f"{name} is ready: nothing to kill" for name in names]
    # With --json, a JSON line a job, as `run` and `events` write: they were objects of
    # several lines one after another, no JSON at all (probe DH F1).
    out, _ = run(capsys, "kill", *names, "--json")
    killed = [{"name": name, "killed": False, "status": "ready"} for name in names]
    assert [json.loads(line) for line in out.splitlines()] == killed
    out, _ = run(capsys, "purge", names[0])
    assert out.splitlines() == [f"purged {names[0]}"]
    out, _ = run(capsys, "purge", *names[1:], "--json")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"name": name, "purged": True} for name in names[1:]
    ]
    out, _ = run(capsys, "jobs")
    assert not any(name in out for name in names)
    # The first that fails stops the rest, which are named.
    _, err = run(capsys, "purge", "nosuchjob@1:2:3", names[0], status=1)
    assert f"(not tried after it: {names[0]})" in err.splitlines()[0], err


def test_results_of_a_job_that_are_no_pairs_print_one_field_a_line(
    cluster_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The results of a job discodsl did not make (lines of text, here a pipeline of no
    stages, whose results are its raw:// inputs) failed unpacking a line as a (key,
    value) pair, with a traceback, and a line of two characters printed as two fields
    (probe DH F2)."""
    urls = [["raw://hello world"], ["raw://ab"], ["raw://1"]]
    monkeypatch.setattr(Master, "results_of", lambda self, name: urls)
    out, _ = run(capsys, "results", "raw@704:9a3b7:54583")
    assert out == "hello world\nab\n'1'\n"  # text that reads as a literal, quoted
    out, _ = run(capsys, "results", "raw@704:9a3b7:54583", "--json")
    assert [json.loads(line) for line in out.splitlines()] == [["hello world"], ["ab"], ["1"]]


def _run_a_script_of_a_class(script: Path) -> str:
    """Run, as a script of its own, a cluster job whose records hold the script's class
    Stat; the job's name."""
    script.write_text(
        "import dataclasses\n"
        "from discodsl import job, map\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class Stat:\n    n: int\n"
        "@map\ndef stats(line):\n    yield line, Stat(len(line))\n"
        "@job(partitions=None)\ndef kept():\n    return [stats]\n"
        "print(kept.run(['raw://ab'], mode='cluster', progress=False).jobname)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=script.parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_results_of_a_job_holding_a_scripts_class_read_by_another_program_say_so(
    cluster_env: str, tmp_path: Path
) -> None:
    # Results.of_job in a restarted driver was told to pass the run's results to the job
    # reading them, where no job reads them (probe CT F2).
    from discodsl import Results
    from discodsl.errors import MalformedRecord

    with pytest.raises(MalformedRecord) as info:
        list(Results.of_job(_run_a_script_of_a_class(tmp_path / "script_records.py")))
    said = str(info.value)
    assert "need a class this process cannot import" in said and "Stat" in said
    assert "define it in this program too, as it was and under the same name" in said
    assert "job reading them" not in said


def test_results_of_a_job_holding_a_scripts_class_say_where_to_print_them(
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The advice was for a job reading them (pass the run's results to it), which a
    # command printing them is not.
    script = tmp_path / "script_records.py"
    _, err = run(capsys, "results", _run_a_script_of_a_class(script), status=1)
    assert "Stat" in err and "print the records there" in err, err
    assert "record_urls" not in err, err
    # A class of a module the command cannot import here: where to run it, not __main__.
    (tmp_path / "teamkeys.py").write_text(
        "import dataclasses\n@dataclasses.dataclass(frozen=True)\nclass Key:\n    n: int\n"
    )
    script.write_text(
        script.read_text()
        .replace(
            "import dataclasses\n",
            "import cloudpickle, dataclasses, teamkeys\n"
            "cloudpickle.register_pickle_by_value(teamkeys)\n",
        )
        .replace("Stat(len(line))", "teamkeys.Key(len(line))")
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    _, err = run(capsys, "results", done.stdout.strip(), status=1)
    assert "teamkeys" in err and "where the class's module imports" in err, err
    assert "__main__" not in err, err


def test_every_report_of_a_job_command_is_json_with_json(
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pack = tmp_path / "wordcount.jobpack"
    run(capsys, "jobpack", "build", WORDCOUNT, *INPUTS, "-o", str(pack))
    name = json.loads(run(capsys, "--json", "submit", str(pack))[0])["name"]
    assert name.startswith("wordcount@")
    waited = {"name": name, "status": "ready", "result_files": 2, "results_deleted": False}
    assert json.loads(run(capsys, "wait", name, "--json")[0]) == waited
    reply = {"name": name, "killed": False, "status": "ready"}
    assert json.loads(run(capsys, "kill", name, "--json")[0]) == reply
    assert json.loads(run(capsys, "purge", name, "--json")[0]) == {"name": name, "purged": True}
    one = tmp_path / "one.txt"
    one.write_text("first\n")
    blobs = json.loads(run(capsys, "--json", "ddfs", "push", "data:one", str(one))[0])
    assert [len(replicas) for replicas in blobs] == [1]
    assert blobs[0][0].startswith("disco://localhost/ddfs/")
    assert json.loads(run(capsys, "--json", "ddfs", "rm", "data:one")[0]) == {"deleted": "data:one"}


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["jobpack", "build", WORDCOUNT, "raw://x", "-o", "-"], "jobpack build writes a jobpack"),
        (["ddfs", "cat", "data:one"], "ddfs cat writes the blobs' bytes"),
    ],
)
def test_json_is_refused_by_the_commands_that_write_bytes(
    capsys: pytest.CaptureFixture[str], argv: list[str], why: str
) -> None:
    _, err = run(capsys, *argv, "--json", status=2)
    assert f"error: --json: {why}" in err


@pytest.mark.parametrize("damage", ["cut", "empty", "garbage"])
def test_a_damaged_jobpack_is_refused_before_it_is_sent(
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, damage: str
) -> None:
    pack = tmp_path / "sleeper.jobpack"
    run(capsys, "jobpack", "build", "tests.cluster_jobs:sleeper", "raw://x", "-o", str(pack))
    data = pack.read_bytes()
    pack.write_bytes({"cut": data[:-1], "empty": b"", "garbage": bytes(range(256))}[damage])
    for command in ("show", "submit"):
        argv = ["jobpack", "show", str(pack)] if command == "show" else ["submit", str(pack)]
        _, err = run(capsys, *argv, status=1)
        one_error(err, "the job's pickle in the jobdata is" if damage == "cut" else "jobpack")
    out, _ = run(capsys, "jobs")
    assert "sleeper@" not in out  # nothing reached the master


def test_an_event_of_printed_lines_is_followed_by_no_blank_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from discodsl.cli.jobs import _print_event

    _print_event(("2026/12/05 08:00:00", "vm", "MSG: [words:0] hello\nworld\n"), as_json=False)
    assert capsys.readouterr().out == "2026/12/05 08:00:00 vm MSG: [words:0] hello\nworld\n"
    _print_event(("t", "vm", "MSG: a\n"), as_json=True)
    assert json.loads(capsys.readouterr().out) == ["t", "vm", "MSG: a\n"]


def test_events_follow_a_saved_job_to_its_ready_line(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A save_results job is ready before the master writes its last events (up to 2 s
    later, job_event.erl): --follow reads on until the READY line."""
    job = jobs.wordcount.with_options(save_results=True)
    with Master(cluster_env, retries=0) as client:
        name = client.submit(builder.build_jobpack(job, job.options, [["raw://a b"]]))
        client.wait(name, poll_ms=100, timeout_s=30)
    out, _ = run(capsys, "events", name, "--follow")
    assert out.splitlines()[0].endswith("New job initialized!")
    assert "READY: Job done in" in out.splitlines()[-1]


def _no_listing(*args: Any) -> Any:
    raise ClientError("GET /ddfs/tags: not found (404)")


def test_a_saved_job_whose_results_tag_was_deleted_is_ready_and_says_so(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `wait` exited 1 with "no DDFS tag named disco:results:JOB"; `results` said the same,
    # not that the job was ready and what to do (probe DH F8).
    job = jobs.wordcount.with_options(save_results=True)
    with Master(cluster_env, retries=0) as client:
        name = client.submit(builder.build_jobpack(job, job.options, [["raw://a b"]]))
    run(capsys, "wait", name)
    saved = f"  its results are saved in DDFS tag disco:results:{name}\n"
    assert run(capsys, "status", name)[0].endswith(saved)
    assert json.loads(run(capsys, "status", name, "--json")[0])["results_deleted"] is False
    with pytest.MonkeyPatch.context() as patched:  # DDFS not answering: the status all the same
        patched.setattr(DDFS, "list_tags", _no_listing)
        assert json.loads(run(capsys, "status", name, "--json")[0])["results_deleted"] is None
        assert "result(s)" in run(capsys, "status", name)[0]  # probe DS F4
    run(capsys, "ddfs", "rm", f"disco:results:{name}")
    # status still counted the deleted tag as its one result (probe DK F7)
    deleted = f"  the results it saved (DDFS tag disco:results:{name}) were deleted\n"
    assert run(capsys, "status", name)[0].endswith(deleted)
    assert json.loads(run(capsys, "status", name, "--json")[0])["results_deleted"] is True
    out, _ = run(capsys, "wait", name)
    assert (
        out
        == f"{name}: ready, but the results it saved (DDFS tag disco:results:{name}) were deleted\n"
    )
    out, _ = run(capsys, "wait", name, "--json")
    gone = {"name": name, "status": "ready", "result_files": None, "results_deleted": True}
    assert json.loads(out) == gone
    _, err = run(capsys, "results", name, status=1)
    one_error(err, f"job {name!r} is ready, but the results it saved", "run the job again")


def test_ddfs_push_ls_cat_rm(
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
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
    assert out == ""  # no line at all when no tag matches
    _, err = run(capsys, "ddfs", "cat", "data:lines", status=1)
    one_error(err, "no DDFS tag named 'data:lines'")
    _, err = run(capsys, "ddfs", "rm", "data:lines", status=1)  # a typo must not look done
    one_error(err, "no DDFS tag named 'data:lines'")


def test_ddfs_rm_reads_no_tag_so_needs_no_read_token(
    cluster_env: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # It read the tag first, to tell a missing one: a tag with a read token then needed it
    # too, where DDFS deletes with the write token alone (probe DP F7, on a real master).
    (tmp_path / "kept.txt").write_text("kept\n")
    run(capsys, "ddfs", "push", "data:kept", str(tmp_path / "kept.txt"))

    def no_read(*args: Any) -> Any:
        raise AssertionError("the tag was read")

    monkeypatch.setattr(DDFS, "get_tag", no_read)
    assert run(capsys, "ddfs", "rm", "tag://data:kept")[0] == "deleted tag://data:kept\n"
    _, err = run(capsys, "ddfs", "rm", "data:kept", status=1)
    one_error(err, "no DDFS tag named 'data:kept'")


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
    cluster_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jobpack"
    bad.write_bytes(b"\xd5\xc0\x00\x02 not a jobpack")
    for argv in (["submit", str(bad)], ["jobpack", "show", str(bad)]):  # nothing sent
        _, err = run(capsys, *argv, status=1)
        one_error(err, "header", "these bytes are not a jobpack")
    bad.write_text("root:x:0:0:root:/root:/bin/bash\n")
    _, err = run(capsys, "jobpack", "show", str(bad), status=1)
    one_error(err, "not a Disco jobpack: build one with `discodsl jobpack build`")


def test_dead_job(cluster_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, err = run(capsys, "run", "tests.cluster_jobs:exploding", "raw://x", status=1)
    error, hint = one_error(err, "failed in task explode:0", "KeyError", "no entry for 'x'")
    name = error.split("'")[1]
    assert hint == f"hint: see the worker's traceback with `discodsl events {name}`"
    out, _ = run(capsys, "events", name)
    assert "KeyError: \"no entry for 'x'\"" in out and "in explode" in out
    # Run with --master, the hint's command names it too: without, it asks another master.
    argv = ["--master", cluster_env, "run", "tests.cluster_jobs:exploding", "raw://x"]
    _, err = run(capsys, *argv, status=1)
    error, hint = one_error(err, "failed in task explode:0")
    name = error.split("'")[1]
    assert (
        hint
        == f"hint: see the worker's traceback with `discodsl --master {cluster_env} events {name}`"
    )


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


# --------------------------------------------------------------------------
# run: options anywhere, the output formats, no inputs, hints that fit the mode
# --------------------------------------------------------------------------

ODD_MODULE = """
from discodsl import job, map

RECORDS = [
    ("None", None), (None, "None"), ("2", 2), (2, "2"), ("", ""), ("True", True),
    ("tab\\there", "new\\nline\\r"), ("back\\\\slash", "'quoted'"), ("b'x'", b"x"),
    (("k", 1), b"bytes"), ("set", {1, 2}), ("list", [1, ("t",)]), ("  spaced ", 1.5),
    ("dict", {"a": [None]}), ("tagged", {"repr": "x"}), ("intkeys", {1: 2}),
    ("set()", set()),
]


@map
def emit(line):
    yield from RECORDS
    yield "nan", float("nan")


@job(partitions=1)
def odd():
    return [emit]
"""


@pytest.fixture
def odd_job(tmp_path: Path) -> Iterator[tuple[str, list[tuple[Any, Any]]]]:
    """``FILE:odd``, a job whose records are awkward to print, and those records (nan aside)."""
    path = tmp_path / "cli_odd_records.py"
    path.write_text(ODD_MODULE)
    module: dict[str, Any] = {}
    exec(ODD_MODULE, module)
    yield f"{path}:odd", module["RECORDS"]
    sys.modules.pop("cli_odd_records", None)
    sys.path.remove(str(tmp_path))


def read_tsv_field(field: str) -> Any:
    """The documented reading: a Python literal, else text with \\\\ \\t \\n \\r escapes."""
    try:
        return ast.literal_eval(field)
    except (ValueError, SyntaxError):
        escapes = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
        return re.sub(r"\\(.)", lambda m: escapes[m[1]], field)


@pytest.mark.parametrize(
    "argv",
    [
        ["run", WORDCOUNT, "--inline", *INPUTS],
        ["run", WORDCOUNT, INPUTS[0], "--partitions", "1", "--local", INPUTS[1]],
        ["run", "--partitions=2", WORDCOUNT, INPUTS[0], "--inline", INPUTS[1], "--json"],
    ],
)
def test_run_takes_options_anywhere(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    out, _ = run(capsys, *argv)
    if "--json" in argv:
        assert dict(map(json.loads, out.splitlines())) == {"a": 2, "b": 1, "c": 3}
    else:
        assert records(out) == RECORDS


def test_params_set_on_the_command_line_reach_the_stages(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    job = "tests.jobs:long_wordcount"
    out, _ = run(capsys, "run", "--inline", job, "raw://a bb ccc dddd")
    assert records(out) == {}  # the job's own params: min_len 5
    out, _ = run(capsys, "run", "--inline", "-P", "min_len=3", job, "raw://a bb ccc dddd")
    assert records(out) == {"ccc": "1", "dddd": "1"}
    pack = tmp_path / "p.jobpack"
    run(capsys, "jobpack", "build", job, "--param", "min_len=2", "-o", str(pack), "raw://x")
    _, err = run(capsys, "run", "--inline", "-P", "min_len", job, "raw://a", status=2)
    assert "'min_len': give NAME=VALUE" in err


def test_partitions_zero_on_the_command_line_is_no_partitioning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, _ = run(capsys, "run", "--inline", "--partitions", "0", WORDCOUNT, *INPUTS)
    assert records(out) == RECORDS
    pack = tmp_path / "wc.jobpack"
    run(capsys, "jobpack", "build", WORDCOUNT, "--partitions", "0", "-o", str(pack), *INPUTS)
    out, _ = run(capsys, "jobpack", "show", str(pack))
    assert json.loads(out)["jobdict"]["pipeline"][1] == ["total", "group_all", False]
    # Below 0: told the command line's way to say none, not the Python API's (None).
    _, err = run(capsys, "run", "--inline", "--partitions", "-1", WORDCOUNT, *INPUTS, status=2)
    assert "argument --partitions: -1: give a number of partitions from 1 to 100,000" in err
    assert "--partitions 0 for no partitioning" in err and "None" not in err


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--name", "wc"], "(Disco's --name: the job is named after its function"),
        (["-n", "wc"], "(Disco's -n: the job is named after its function"),
        (["--profile"], "(Disco's --profile: profile a stage in one process"),
        (["--save"], "(Disco's --save: set save_results=True on the job"),
        (["--colour"], "unrecognized arguments: --colour\n"),
    ],
)
def test_disco_run_flags_say_what_to_write_instead(
    flags: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, err = run(capsys, "run", "--inline", WORDCOUNT, *INPUTS, *flags, status=2)
    assert words in err


@pytest.mark.parametrize("before", [[], INPUTS[:1]])
def test_an_input_file_named_like_an_option_is_told_how_to_give(
    before: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "the following arguments are required: INPUT" for a file that is there, `-x.txt`.
    (tmp_path / "-x.txt").write_text("a b a\n")
    monkeypatch.chdir(tmp_path)
    _, err = run(capsys, "run", "--inline", WORDCOUNT, *before, "-x.txt", status=2)
    assert "(-x.txt is read as an option: write ./-x.txt, or put -- before the inputs)" in err
    out, _ = run(capsys, "run", "--inline", WORDCOUNT, "./-x.txt")
    assert records(out) == {"a": "2", "b": "1"}


def test_jobpack_build_takes_options_anywhere(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pack = tmp_path / "wc.jobpack"
    run(capsys, "jobpack", "build", WORDCOUNT, "-o", str(pack), *INPUTS)
    out, _ = run(capsys, "jobpack", "show", str(pack))
    assert [i[2] for i in json.loads(out)["jobdict"]["inputs"]] == [[u] for u in INPUTS]


def test_run_tsv_reads_back_exactly(
    capsys: pytest.CaptureFixture[str], odd_job: tuple[str, list[tuple[Any, Any]]]
) -> None:
    spec, expected = odd_job
    out, _ = run(capsys, "run", "--inline", spec, "raw://x")
    lines = out.splitlines()
    assert all(line.count("\t") == 1 for line in lines), out
    read = [tuple(map(read_tsv_field, line.split("\t"))) for line in lines]
    assert read[:-1] == expected and read[-1] == ("nan", "nan")  # nan: its repr, as text
    shown = dict(line.split("\t") for line in lines)
    assert shown["'None'"] == "None" and shown["None"] == "'None'"
    assert shown["'2'"] == "2" and shown["2"] == "'2'"
    assert shown["tab\\there"] == "new\\nline\\r" and shown["back\\\\slash"] == "\"'quoted'\""
    assert shown["set"] == "{1, 2}" and shown["('k', 1)"] == "b'bytes'"


def test_run_json_lines_tag_what_json_cannot_hold(
    capsys: pytest.CaptureFixture[str], odd_job: tuple[str, list[tuple[Any, Any]]]
) -> None:
    spec, expected = odd_job
    out, _ = run(capsys, "--json", "run", "--inline", spec, "raw://x")
    read = [json.loads(line) for line in out.splitlines()]
    assert all(isinstance(pair, list) and len(pair) == 2 for pair in read)
    shown = {json.dumps(k): v for k, v in read}
    assert shown['"None"'] is None and shown["null"] == "None"
    assert shown['"2"'] == 2 and shown["2"] == "2" and shown['"True"'] is True
    assert shown['{"repr": "(\'k\', 1)"}'] == {"repr": "b'bytes'"}
    assert shown['"set"'] == {"repr": "{1, 2}"} and shown['"nan"'] == {"repr": "nan"}
    assert shown['"list"'] == [1, {"repr": "('t',)"}] and shown['"dict"'] == {"a": [None]}
    assert shown['"tagged"'] == {"repr": "{'repr': 'x'}"}  # a dict that looks like a tag
    assert shown['"intkeys"'] == {"repr": "{1: 2}"}
    assert shown['"tab\\there"'] == "new\nline\r"

    def untag(value: Any) -> Any:
        if isinstance(value, dict) and list(value) == ["repr"]:
            return ast.literal_eval(value["repr"])
        if isinstance(value, list):
            return [untag(item) for item in value]
        return value

    assert [(untag(k), untag(v)) for k, v in read[:-1]] == expected


def test_an_option_of_the_command_given_before_it_is_told_to_go_after_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`discodsl --inline run ...` said `run` does not recognise --inline."""
    assert main(["--inline", "run", "jobs.py:wc", "raw://x"]) == 2
    err = capsys.readouterr().err
    assert "--inline is an option of discodsl run: put it after run" in err


def test_numpy_numbers_and_strings_print_as_the_plain_values_they_hold() -> None:
    """np.float64(1.5) printed as its repr, and as {"repr": ...} in JSON, though a float."""
    import enum

    import numpy

    from discodsl.recordtext import write_records

    class Colour(enum.IntEnum):
        RED = 1

    records = [(numpy.str_("mean"), numpy.float64(1.5)), (numpy.int64(3), Colour.RED)]
    for as_json, want in (
        (False, "mean\t1.5\n3\t<Colour.RED: 1>\n"),
        (True, '["mean", 1.5]\n[3, {"repr": "<Colour.RED: 1>"}]\n'),
    ):
        out = io.StringIO()
        write_records(records, out, as_json=as_json)
        assert out.getvalue() == want


_ANY_CHARACTER = st.characters(exclude_categories=())  # lone surrogates too


@given(
    st.text(_ANY_CHARACTER, max_size=6),
    st.dictionaries(st.text(_ANY_CHARACTER, max_size=3), st.text(_ANY_CHARACTER, max_size=3)),
)
def test_json_lines_are_strict_json_that_gives_the_records_back(
    key: str, value: dict[str, str]
) -> None:
    # A str holding a lone surrogate (a file name's undecodable byte) was written as
    # "\udc80", which strict JSON parsers refuse (probe CT S2): it goes as its repr.
    from discodsl.recordtext import write_records

    out = io.StringIO()
    write_records([(key, value)], out, as_json=True)
    read = json.loads(out.getvalue())
    json.dumps(read, ensure_ascii=False).encode()  # strict: no lone surrogate, once parsed

    def untag(tagged: Any) -> Any:
        if isinstance(tagged, dict) and list(tagged) == ["repr"]:
            return ast.literal_eval(tagged["repr"])
        if isinstance(tagged, dict):
            return {k: untag(v) for k, v in tagged.items()}
        return tagged

    assert [untag(tagged) for tagged in read] == [key, value]


def test_ints_of_more_digits_than_pythons_str_limit_print_whole() -> None:
    """10**5000 failed with Python's 4,300-digit limit, and the advice was to fix int's
    __repr__ (what worked was PYTHONINTMAXSTRDIGITS=0)."""
    from discodsl.recordtext import write_records

    digits = "1" + "0" * 5000
    limit = sys.get_int_max_str_digits()
    records = [(10**5000, (1, -(10**5000))), ("small", 2)]
    for as_json, want in (
        (False, f"{digits}\t(1, -{digits})\nsmall\t2\n"),
        (True, f'[{digits}, {{"repr": "(1, -{digits})"}}]\n["small", 2]\n'),
    ):
        out = io.StringIO()
        write_records(records, out, as_json=as_json)
        assert out.getvalue() == want
        assert sys.get_int_max_str_digits() == limit  # lifted for that record alone


def test_a_str_of_more_digits_than_pythons_str_limit_prints_quoted() -> None:
    """A str of 5,000 digits printed as the int of those digits: ast.literal_eval refused
    it for the digit limit, so it was taken for no literal and printed bare."""
    from discodsl.recordtext import write_records

    digits = "1" + "0" * 5000
    out = io.StringIO()
    write_records([(digits, 1)], out, as_json=False)
    assert out.getvalue() == f"'{digits}'\t1\n"


@given(st.text(alphabet="0123456789._:-+/ ", max_size=14))
def test_numeric_looking_text_is_told_a_literal_as_literal_eval_tells_it(text: str) -> None:
    """Dates, addresses and ids (``2026-12-07``, ``10.1.2.3``) are told unparsed: parsing
    each made a TSV of them cost 7 times the job. The answer must be literal_eval's."""
    from discodsl.recordtext import literal_evaluates, reads_as_literal

    assert reads_as_literal(text) == literal_evaluates(text), text


@pytest.mark.parametrize(
    "text",
    [
        "10.1.2.3",
        "2026-12-07",
        "12:30:05",
        "1/2",
        "007",
        "0_0",
        "1_000",
        "- .5",
        "+1.",
        "1e5",
        "1,",
        "1 # x",
        "1-2j",
        "--1",
        "5" * 5000,
    ],
)
def test_numeric_looking_text_of_each_kind_is_told_as_literal_eval_tells_it(text: str) -> None:
    from discodsl.recordtext import literal_evaluates, reads_as_literal

    assert reads_as_literal(text) == literal_evaluates(text), text


@pytest.mark.parametrize(("flag", "bars"), [("--no-progress", False), ("--progress", True)])
def test_run_turns_a_jobs_progress_bars_off_or_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str, bars: bool
) -> None:
    """A job declared progress=True drew its bars into a cron job's log, and the command
    line had no way to turn them off."""
    job_file = tmp_path / f"showing_job_{bars}.py"  # a module of its own for each
    job_file.write_text(
        "from discodsl import job, map\n"
        "@map\n"
        "def lines(line):\n"
        "    yield line, 1\n"
        "@job(progress=False)\n"
        "def quiet():\n"
        "    return [lines]\n"
        "@job(progress=True)\n"
        "def showing():\n"
        "    return [lines]\n"
    )
    name = "showing" if flag == "--no-progress" else "quiet"
    out, err = run(capsys, "run", "--local", flag, f"{job_file}:{name}", "raw://a")
    assert out == "a\t1\n"
    assert ("100%|" in err) == bars, err


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--partitions", "100001"], "--partitions 0 for no partitioning"),
        (["--timeout", "1e300"], "a year at most, e.g. --timeout 600, or --timeout 0"),
    ],
)
def test_too_big_a_count_is_refused_in_the_command_lines_words(
    capsys: pytest.CaptureFixture[str], option: list[str], said: str
) -> None:
    # They fell through to the API's words: "or None", which no command line can give.
    _, err = run(capsys, "run", WORDCOUNT, "raw://a", "--inline", *option, status=2)
    assert said in err and "None" not in err, err


def test_run_json_to_a_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    out, _ = run(capsys, "run", "--json", "--inline", WORDCOUNT, *INPUTS, "-o", str(target))
    assert out == ""
    assert dict(map(json.loads, target.read_text().splitlines())) == {"a": 2, "b": 1, "c": 3}


PRINTING_MODULE = """
from discodsl import job, map


@map
def words(line):
    print("STAGEPRINT", line)
    yield line, 1


@job
def printing():
    return [words]
"""


def test_run_inline_sends_what_stages_print_to_stderr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """stdout holds the records alone (tests/test_cli_output.py: at the descriptor level)."""
    (tmp_path / "cli_printing.py").write_text(PRINTING_MODULE)
    try:
        out, err = run(capsys, "run", f"{tmp_path}/cli_printing.py:printing", "raw://x", "--inline")
    finally:
        sys.modules.pop("cli_printing", None)
        sys.path.remove(str(tmp_path))
    assert out == "x\t1\n"
    assert "STAGEPRINT x" in err


class _LeavingReader(io.StringIO):
    """A stdout whose reader leaves after the first line, as `| head -1` does."""

    def write(self, text: str) -> int:
        if self.getvalue():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


def test_results_to_a_reader_that_leaves_end_quietly(
    cluster_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "run", WORDCOUNT, *INPUTS)
    leaving = _LeavingReader()
    monkeypatch.setattr(sys, "stdout", leaving)
    assert main(["results", "@"]) == 128 + signal.SIGPIPE
    assert len(leaving.getvalue().splitlines()) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["run", WORDCOUNT],
        ["run", "--inline", WORDCOUNT, "--json"],
        ["jobpack", "build", WORDCOUNT, "-o", "job.pack"],  # it gave Python's advice, exit 1
    ],
)
def test_run_without_inputs_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    out, err = run(capsys, *argv, status=2)
    assert out == ""
    assert f"usage: discodsl {'jobpack build' if argv[0] == 'jobpack' else 'run'}" in err
    assert "required: INPUT" in err


@pytest.mark.parametrize("flag", [[], ["--local"]])
def test_a_failed_local_run_points_at_inline(
    capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    _, err = run(capsys, "run", *flag, "tests.cluster_jobs:exploding", "raw://x", status=1)
    _, hint = one_error(err, "failed in task explode:0", "KeyError")
    assert "--inline" in hint and "events" not in hint and "master" not in hint


def test_a_refused_record_in_a_local_run_points_at_inline_to_debug(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = "tests.semantics_jobs:strings_map_only"
    _, err = run(capsys, "run", "--local", job, "raw://ab", status=1)
    _, hint = one_error(err, "failed in task yields_strings:0", "not a (key, value) pair")
    assert hint == (
        "hint: rerun with --inline to debug the stage in this process (breakpoint() works)"
    )


@pytest.mark.parametrize(
    ("name", "data"),
    [("latin.txt", b"caf\xe9 au lait\n"), ("cut.gz", b"\x1f\x8b\x08\x00\x00")],
    ids=["MalformedRecord", "DamagedInput"],
)
def test_an_unreadable_input_in_a_local_run_gives_no_hint_about_the_stage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, data: bytes
) -> None:
    bad = tmp_path / name
    bad.write_bytes(data)
    _, err = run(capsys, "run", "--local", WORDCOUNT, str(bad), status=1)
    lines = one_error(err, name)
    assert "--inline" not in err and len(lines) == 1


def test_local_beats_disco_master_for_the_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCO_MASTER", "http://127.0.0.1:9")  # never contacted
    _, err = run(capsys, "run", "tests.cluster_jobs:exploding", "--local", "raw://x", status=1)
    _, hint = one_error(err, "failed in task explode:0")
    assert "--inline" in hint and "events" not in hint


def test_inline_failures_keep_the_stage_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyError, match="no entry for 'x'"):
        main(["run", "tests.cluster_jobs:exploding", "raw://x", "--inline"])


# -- which master: none configured, or one in the settings file ----------------------

NO_MASTER_COMMANDS = [
    ["jobs"],
    ["status", "@"],
    ["events", "@"],
    ["wait", "@"],
    ["results", "@"],
    ["kill", "@"],
    ["purge", "@"],
    ["submit", "job.pack"],
    ["ddfs", "ls"],
    ["ddfs", "push", "data:x", "file.txt"],
    ["ddfs", "cat", "data:x"],
    ["ddfs", "rm", "data:x"],
    ["jobpack", "build", WORDCOUNT, "tag://data:x", "-o", "job.pack"],
]


@pytest.fixture
def nothing_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No DISCO_* variables (conftest), no settings file, a HOME without ~/.disco, and no
    local runs registered."""
    monkeypatch.delenv("DISCO_SETTINGS_FILE")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DISCODSL_RUNS_DIR", str(tmp_path / "no-runs"))
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("argv", NO_MASTER_COMMANDS, ids=" ".join)
def test_cluster_commands_without_a_master_say_so(
    nothing_configured: None, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    _, err = run(capsys, *argv, status=1)
    lines = one_error(err, "no Disco master is configured", "DISCO_MASTER", "--master URL")
    assert lines == lines[:1], "one line: the fix is in it"
    assert "could not reach" not in err


def test_a_master_in_home_disco_is_used(
    nothing_configured: None,
    disco_master: DiscoMaster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / ".disco").write_text(
        f"DISCO_MASTER = {disco_master.url!r}\nDISCO_PORT = {disco_master.port}\n"
    )
    out, _ = run(capsys, "run", WORDCOUNT, *INPUTS)
    assert records(out) == RECORDS
    out, _ = run(capsys, "jobs")
    assert len(disco_master.jobs.jobs) == 1 and "ready" in out


@pytest.mark.parametrize("mode", ["--local", "--inline"])
def test_a_run_here_reads_tags_of_the_master_given_as_the_api_does(
    nothing_configured: None,
    disco_master: DiscoMaster,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
) -> None:
    # `--master URL run ... --local` was refused ("choose where the job runs"), though
    # run(master=URL, mode="local") and DISCO_MASTER=URL with --local take it.
    (tmp_path / "words.txt").write_text("a b c\nc a c\n")
    run(capsys, "--master", disco_master.url, "ddfs", "push", "data:words", "words.txt")
    out, _ = run(capsys, "--master", disco_master.url, "run", WORDCOUNT, "tag://data:words", mode)
    assert records(out) == RECORDS
    assert len(disco_master.jobs.jobs) == 0  # the job ran here


@pytest.mark.parametrize("command", [["cache", "ls"], ["cache", "clear"]])
def test_a_cache_directory_that_is_a_file_is_named(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    # `cache ls` said 0 stages were kept there, `cache clear` that it removed none (probe CV
    # F8e).
    (tmp_path / "t.txt").write_text("a\n")
    monkeypatch.setenv("DISCODSL_CACHE_DIR", str(tmp_path / "t.txt"))
    _, err = run(capsys, *command, status=1)
    assert f"the cache directory {tmp_path / 't.txt'} cannot be read: Not a directory" in err
    assert "point DISCODSL_CACHE_DIR at a directory" in err


def test_cache_ls_and_clear(capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "run", WORDCOUNT, *INPUTS, "--inline", "--cache")
    _, err = run(capsys, "run", WORDCOUNT, *INPUTS, "--inline", "--cache")
    assert "discodsl: cached results of job 'wordcount' from run wordcount (" in err
    out, _ = run(capsys, "cache", "ls")
    lines = out.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("2 stage(s), ")
    assert "wordcount: stage 2/2 total of run wordcount" in lines[0]
    assert "wordcount: stage 1/2 words of run wordcount" in lines[1]
    listed = json.loads(run(capsys, "cache", "ls", "--json")[0])
    assert [row["stage"] for row in listed] == ["total", "words"]
    assert run(capsys, "cache", "ls", "--job", "other")[0].startswith("0 stage(s), 0 B in ")
    out, _ = run(capsys, "cache", "clear", "--job", "other")
    assert out.startswith("removed 0 stage(s), 0 B, from ")
    assert out.rstrip().endswith(": no stage of job 'other' is kept (see `discodsl cache ls`)")
    cleared = json.loads(run(capsys, "cache", "clear", "--json")[0])
    assert cleared["removed"] == 2 and cleared["bytes"] == sum(row["size"] for row in listed)
    assert run(capsys, "cache", "ls")[0].startswith("0 stage(s), 0 B in ")


def test_cache_ls_says_a_cluster_runs_stages_are_kept_if_its_master_finished_them(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # They were listed as kept as soon as the job was submitted, and after it was killed
    # midway, which an operator sizing the cache took at its word (probe DH F12).
    run(capsys, "run", WORDCOUNT, *INPUTS, "--cache")
    out, _ = run(capsys, "cache", "ls")
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert all(line.endswith(" (if finished on that master)") for line in lines[:2]), out
    run(capsys, "run", WORDCOUNT, *INPUTS, "--inline", "--cache")
    out, _ = run(capsys, "cache", "ls")
    assert sum("(if finished on that master)" in line for line in out.splitlines()) == 2, out


def test_cache_clear_that_cannot_remove_the_stages_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a read-only mount, or another user's cache, it said "removed 2 stage(s)", exit 0.
    run(capsys, "run", WORDCOUNT, *INPUTS, "--inline", "--cache")

    def refuse(path: str, *, dir_fd: int | None = None) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

    with monkeypatch.context() as patch:
        patch.setattr(os, "unlink", refuse)
        patch.setattr(os, "rmdir", refuse)
        out, err = run(capsys, "cache", "clear", status=1)
    assert out.startswith("removed 0 stage(s), 0 B, from ")
    one_error(err, "could not remove 2 of the cache's entries", "(Read-only file system)")
    assert "DISCODSL_CACHE_DIR" in err and "Traceback" not in err
    assert run(capsys, "cache", "ls")[0].splitlines()[-1].startswith("2 stage(s), ")


def test_cache_ls_says_the_size_limit_and_refuses_a_bad_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "cache", "ls")[0].rstrip().endswith(", limit 2.0 GB")
    monkeypatch.setenv("DISCODSL_CACHE_SIZE", "500M")
    assert run(capsys, "cache", "ls")[0].rstrip().endswith(", limit 500.0 MB")
    monkeypatch.setenv("DISCODSL_CACHE_SIZE", "bogus")
    _, err = run(capsys, "cache", "ls", status=1)
    one_error(err, "DISCODSL_CACHE_SIZE='bogus' is not a size: give bytes")


def test_status_counts_a_stages_pending_tasks_once(capsys: pytest.CaptureFixture[str]) -> None:
    # jobinfo as a Disco 0.5.4 master gives it for 3 tasks, 1 running, 2 waiting for a
    # slot: pending (2) is part of waiting (2), not more tasks.
    row = ["s", 2, 2, 1, 0, 0]
    info = {"active": "active", "timestamp": "2026/12/04 03:00:00", "pipeline": [row]}
    cli.jobs._print_status(argparse.Namespace(json=False), "j@1:2:3", info)
    assert "s                0/3 done, 1 running, 0 failed" in capsys.readouterr().out


class _FullDisk(io.StringIO):
    """A stdout on a full disk."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("argv", [["cache", "ls"], ["--json", "cache", "ls"]])
def test_a_stdout_that_cannot_be_written_is_one_error_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    _, err = run(capsys, *argv, status=1)
    one_error(err, "cannot write to standard output: No space left on device")
    assert "Traceback" not in err


def test_an_output_file_that_cannot_be_written_is_one_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, err = run(capsys, "run", WORDCOUNT, *INPUTS, "--inline", "-o", "/dev/full", status=1)
    one_error(err, "cannot write /dev/full: No space left on device")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("where", "says"),
    [
        (".", "it is a directory"),
        ("missing/x.jobpack", "no directory 'missing'"),
        ("/dev/full", "No space left on device"),
    ],
)
def test_a_jobpack_that_cannot_be_written_is_one_error_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    where: str,
    says: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    _, err = run(
        capsys, "jobpack", "build", "tests.jobs:wordcount", "raw://x", "-o", where, status=1
    )
    one_error(err, f"cannot write {where}", says)
    assert list(tmp_path.iterdir()) == []


BAD_REPR_MODULE = """
from discodsl import job, map


class Shy:
    def __repr__(self):
        raise RuntimeError("no repr today")


@map
def shy(line):
    yield "fine", 1
    yield "\\ud800", 2
    yield "shy", Shy()


@job(partitions=None)
def shyjob():
    return [shy]
"""


def test_a_job_file_named_like_a_loaded_module_is_refused_saying_to_rename_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "csv.py").write_text(BAD_REPR_MODULE)
    _, err = run(capsys, "run", "--inline", f"{tmp_path / 'csv.py'}:shyjob", "raw://x", status=1)
    one_error(err, "csv.py is named like the module 'csv', which Python took from", "rename")
    assert str(tmp_path) not in sys.path  # its csv.py must not shadow the real one later


def test_a_job_module_named_like_a_loaded_module_is_refused_saying_to_rename_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As MODULE:JOB it said "csv.shyjob is missing, not a job": Python's csv was imported.
    (tmp_path / "csv.py").write_text(BAD_REPR_MODULE)
    monkeypatch.chdir(tmp_path)
    _, err = run(capsys, "run", "--inline", "csv:shyjob", "raw://x", status=1)
    one_error(err, "csv.py is named like the module 'csv', which Python took from", "rename")


def test_a_job_file_with_a_dot_in_its_name_is_told_to_rename_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "my.job.py").write_text(BAD_REPR_MODULE)
    _, err = run(capsys, "run", "--inline", f"{tmp_path / 'my.job.py'}:shyjob", "raw://x", status=1)
    one_error(
        err, "my.job.py is imported by its name", "rename it without the dot (e.g. my_job.py)"
    )


def test_a_job_file_with_relative_imports_is_told_to_be_named_as_a_module(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("N = 1\n")
    (package / "jobs.py").write_text("from .helpers import N\n" + BAD_REPR_MODULE)
    _, err = run(capsys, "run", "--inline", f"{package / 'jobs.py'}:shyjob", "raw://x", status=1)
    one_error(err, "jobs.py makes relative imports, which need its package", "(pkg.jobs:shyjob)")


def test_a_failing_repr_is_said_in_one_line_and_leaves_the_output_file_as_it_was(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    module = tmp_path / "cli_bad_repr.py"
    module.write_text(BAD_REPR_MODULE)
    target = tmp_path / "out.tsv"
    target.write_text("OLD CONTENT\n")
    _, err = run(
        capsys, "run", "--inline", f"{module}:shyjob", "raw://x", "-o", str(target), status=1
    )
    one_error(err, "cannot print record 2 of the results (str key, Shy value)", "no repr today")
    assert target.read_text() == "OLD CONTENT\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["cli_bad_repr.py", "out.tsv"]


def test_a_lone_surrogate_prints_as_its_repr(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    module = tmp_path / "cli_surrogate.py"
    module.write_text(BAD_REPR_MODULE.replace('    yield "shy", Shy()\n', ""))
    out, _ = run(capsys, "run", "--inline", f"{module}:shyjob", "raw://x")
    assert [line.split("\t") for line in out.splitlines()] == [["fine", "1"], ["'\\ud800'", "2"]]


@pytest.mark.parametrize("where", ["missing/out.tsv", "."])
def test_an_output_file_that_cannot_be_made_is_said_before_the_job_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("discodsl.model.Job.run", lambda *a, **k: pytest.fail("the job ran"))
    _, err = run(capsys, "run", WORDCOUNT, *INPUTS, "--inline", "-o", where, status=1)
    one_error(
        err,
        f"cannot write {where}:",
        "it is a directory" if where == "." else "no directory 'missing'",
    )


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("no_such_file.py:job", ["no_such_file.py:job: there is no file", "a .py file"]),
        ("no_such_module:job", ["cannot import 'no_such_module'", "run discodsl from"]),
    ],
)
def test_a_job_that_cannot_be_found_is_named(
    capsys: pytest.CaptureFixture[str], spec: str, words: list[str]
) -> None:
    _, err = run(capsys, "run", "--inline", spec, "raw://x", status=1)
    one_error(err, *words)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (
            "import no_such_dependency_xyz\n",
            [
                "importing 'broken' failed: it imports 'no_such_dependency_xyz', which is not "
                "installed",
                "install it",
            ],
        ),
        ("def job(:\n", ["importing 'broken' failed: SyntaxError", "broken.py, line 1"]),
        (
            "x = 1\nraise ValueError('no config')\n",
            ["importing 'broken' failed: ValueError: no config", "broken.py, line 2"],
        ),
        (  # refused in discodsl, named where the user wrote it
            "from discodsl import job\n\n@job(partitions=-1)\ndef j():\n    return []\n",
            ["importing 'broken' failed: SettingsError", "broken.py, line 3"],
        ),
    ],
)
def test_a_job_module_that_fails_to_import_is_named_with_where(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    words: list[str],
) -> None:
    (tmp_path / "broken.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "broken", raising=False)
    _, err = run(capsys, "run", "--inline", "broken:job", "raw://x", status=1)
    one_error(err, *words)
    assert "Traceback" not in err


RECORDS_OF_A_CLASS = """
from dataclasses import dataclass
from discodsl import job, map

@dataclass(frozen=True)
class Rec:
    word: str

@map
def wrapped(line):
    for word in line.split():
        yield word, Rec(word)

@job
def recs():
    return [wrapped]
"""


def test_results_of_records_holding_a_class_of_a_script_here(
    cluster_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`discodsl results`, run where the job's script is, reads records holding its classes,
    as `python -m discodsl results` did (the console script's path had no working
    directory, and the error began "bad hunk")."""
    (tmp_path / "recjob.py").write_text(RECORDS_OF_A_CLASS)
    monkeypatch.chdir(tmp_path)
    out, _ = run(capsys, "run", "recjob.py:recs", "raw://a b")
    assert out.splitlines() == ["a\tRec(word='a')", "b\tRec(word='b')"]
    monkeypatch.delitem(sys.modules, "recjob", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    out, _ = run(capsys, "results", "@")
    assert out.splitlines() == ["a\tRec(word='a')", "b\tRec(word='b')"]
    out, _ = run(capsys, "results", "@", "-o", "recs.tsv")  # -o as run takes it
    assert out == "" and (tmp_path / "recs.tsv").read_text().splitlines() == [
        "a\tRec(word='a')",
        "b\tRec(word='b')",
    ]


# --- the command line in scripts: closed streams, signals, hints that work as printed ------


def test_a_command_whose_stdout_is_closed_fails_before_it_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `jobs >&-` said 0 and printed nothing; `submit >&-` made a job whose name went nowhere.
    monkeypatch.setattr(sys, "stdout", None)
    for argv in (["jobs"], ["submit", "job.pack"], ["run", WORDCOUNT, "--inline", *INPUTS]):
        assert main(argv) == 1
        one_error(capsys.readouterr().err, "standard output is closed: redirect it")
    out = tmp_path / "out.tsv"
    assert main(["run", WORDCOUNT, "--inline", "-o", str(out), *INPUTS]) == 0
    assert records(out.read_text()) == RECORDS


def test_a_closed_stdin_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    _, err = run(capsys, "jobpack", "show", "-", status=1)
    one_error(err, "standard input is closed: give the jobpack's FILE instead of -")


def test_dash_as_output_is_stdout(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # `-o -` wrote a file called "-".
    out, _ = run(capsys, "run", WORDCOUNT, "--inline", "-o", "-", *INPUTS)
    assert records(out) == RECORDS and not Path("-").exists()


@pytest.mark.parametrize(
    ("output", "words"),
    [("/dev/fd/99", "descriptor 99 is not open"), ("", "-o '' names no file: name one, or -")],
)
def test_an_output_no_run_could_write_is_refused_before_it_runs(
    capsys: pytest.CaptureFixture[str], output: str, words: str
) -> None:
    _, err = run(capsys, "run", "tests.jobs:sleepy", "--local", "-o", output, "raw://x", status=1)
    one_error(err, words)


def test_sighup_ends_a_command_as_sigterm_does() -> None:
    # A closed terminal killed `run` outright: a cluster job ran on, files stayed. (The
    # handler is called here, not sent the signal: without it, SIGHUP ends the suite.)
    before = signal.getsignal(signal.SIGHUP)
    with cli._terminated_as_interrupted():
        handler = signal.getsignal(signal.SIGHUP)
        assert handler is signal.getsignal(signal.SIGTERM) and callable(handler)
        with pytest.raises(KeyboardInterrupt) as info:
            handler(signal.SIGHUP, None)
    assert info.value.args == (signal.SIGHUP,)
    assert signal.getsignal(signal.SIGHUP) is before


def test_the_commands_a_message_names_carry_the_master_they_need() -> None:
    # `discodsl kill NAME` searched the local runs, `discodsl jobs` listed them.
    from discodsl import jobstatus
    from discodsl.runners.cluster import _submit_interrupted

    url = "http://m:8990"
    assert f"`discodsl --master {url} kill wc@1`" in str(jobstatus.still_active("wc@1", 1, 1, url))
    assert "`discodsl kill wc@1`" in str(jobstatus.still_active("wc@1", 1, 1))  # a local run
    assert f"`discodsl --master {url} jobs`" in str(jobstatus.unknown_job(url, "wc@1", "?"))
    said = _submit_interrupted("wc", url)
    assert f"`discodsl --master {url} jobs`" in said and f"--master {url} kill NAME`" in said


@pytest.mark.parametrize("command", ["submit", "jobpack show"])
def test_an_empty_jobpack_name_names_no_file(
    cluster_env: str, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    # "cannot read : Is a directory" (probe DH F10).
    _, err = run(capsys, *command.split(), "", status=1)
    one_error(err, "'' names no file: give the jobpack's FILE, or - for standard input")


def test_errors_say_what_to_do_in_the_command_lines_terms(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "pass master='http://HOST:8989'", "raise timeout= (None: no limit)": the Python API's
    # words, which a command line cannot take (probe DH F10).
    (tmp_path / "settings").write_text("")  # no master
    monkeypatch.setenv("DISCO_SETTINGS_FILE", str(tmp_path / "settings"))
    monkeypatch.delenv("DISCO_MASTER", raising=False)
    _, err = run(capsys, "run", WORDCOUNT, "tag://data:words", status=1)
    assert "give --master http://HOST:8989 to run the job on that cluster" in err, err
    assert "master=" not in err
    _, err = run(
        capsys, "run", "tests.jobs:sleepy", "raw://x", "--local", "--timeout", "0.5", status=1
    )
    assert "raise --timeout (0: no limit)" in err and "raise timeout=" not in err, err


def test_jobpack_build_takes_a_local_runs_files_as_the_local_files_they_are(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # disco://discodsl-local/... went into the jobpack as it was: the job died on the
    # cluster, after its master's retries, where run() takes them (probe DJ F10).
    first = jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)
    pack = tmp_path / "merge.jobpack"
    listed = [url for replicas in first.listed_urls() for url in replicas]
    run(capsys, "jobpack", "build", "tests.jobs:merge_counts", *listed, "-o", str(pack))
    inputs = json.loads(run(capsys, "jobpack", "show", str(pack))[0])["jobdict"]["inputs"]
    given = [url for _, _, urls in inputs for url in urls]
    assert len(given) == len(listed) and all(url.startswith("file:///") for url in given)
    first.close()
    _, err = run(
        capsys, "jobpack", "build", "tests.jobs:merge_counts", *listed, "-o", str(pack), status=1
    )
    one_error(err, "is a file of an earlier run whose results were closed")


def test_quiet_still_says_that_a_cluster_job_runs_on(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `run -q` interrupted left the job running on the master without a word: --quiet
    # silenced the line naming it and how to stop it (probe DH F3).
    from types import SimpleNamespace

    from discodsl import stdio
    from discodsl.runners.cluster import _interrupted

    monkeypatch.setattr(stdio, "QUIET", [True])
    _interrupted(SimpleNamespace(url="http://m:8990"), "wc@1", False)  # type: ignore[arg-type]
    stdio.notice("discodsl: a notice")
    _, err = capsys.readouterr()
    assert err == (
        "discodsl: job wc@1 still runs on http://m:8990; stop it with "
        "`discodsl --master http://m:8990 kill wc@1`\n"
    )


def test_a_local_runs_name_asked_of_a_master_points_to_local(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run made before a master was configured: "no job named ... it may have been
    # purged", where --local finds it (probe DH F5).
    from discodsl.runners import registry

    run(capsys, "run", WORDCOUNT, "--local", *INPUTS)
    name = registry.find("@").name
    for command in ("status", "events", "wait", "kill"):
        _, err = run(capsys, command, name, status=1)
        assert f"no job named {name!r} on the master" in err, err
        hint = f"hint: a local run named {name!r} is registered on this machine: add --local"
        assert hint in err, err
    _, err = run(capsys, "status", "other@704:9a3b7:54583", status=1)
    assert "hint" not in err, err  # the message names the command that lists the jobs
    _, err = run(capsys, "jobdict", name, status=1)  # which has no --local (DJ F6)
    assert "--local" not in err, err


def test_status_json_has_the_same_keys_for_a_local_run_and_a_cluster_job(
    cluster_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A script reading info["results"] of one failed on the other with a KeyError; a
    # cluster job's had no "counters" key, a local run's no "hosts" (probe DH F4).
    from discodsl.cli.jobs import STATUS_KEYS

    run(capsys, "run", WORDCOUNT, *INPUTS)
    cluster = json.loads(run(capsys, "status", "@", "--json")[0])
    run(capsys, "run", WORDCOUNT, "--local", *INPUTS)
    local = json.loads(run(capsys, "status", "@", "--local", "--json")[0])
    assert list(cluster) == list(local) == list(STATUS_KEYS)
    assert cluster["active"] == local["active"] == "ready"
    assert cluster["pipeline"] == local["pipeline"]
    assert cluster["counters"] is None and local["results"] is None  # not known there
    assert local["hosts"] == [socket.gethostname()] and len(cluster["results"]) == 2


def test_an_inline_run_that_gave_up_retrying_says_where_and_how_often(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It said only "discodsl: error: never works": no stage, input, record nor tries, where
    # --local says them all (probe DH F11).
    _, err = run(capsys, "run", "--inline", "tests.semantics_jobs:hopeless", "raw://x", status=1)
    lines = err.splitlines()
    assert lines[0] == "discodsl: error: never works", err
    assert lines[1] == (
        "discodsl: stage 'always_retry' failed on input 'raw://x', record 0: "
        "discodsl.worker.errors.Retry: never "
        "works (failed 2 attempts, max_failures=1)"
    ), err


def test_an_unreachable_node_is_not_blamed_on_the_master() -> None:
    from discodsl.errors import Unreachable

    args = argparse.Namespace(master="http://m:8990")
    node = Unreachable("could not reach the Disco node at http://n:8989", who="the Disco node")
    master = Unreachable("could not reach the Disco master", who="the Disco master")
    assert _hint(node, args) == "" and "is the master running?" in _hint(master, args)


def test_a_job_module_that_exits_when_imported_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # sys.exit(3) at import ended `run` with 3 and no word; argparse printed its own usage.
    (tmp_path / "exiting.py").write_text("import sys\nsys.exit(3)\n")
    _, err = run(capsys, "run", f"{tmp_path / 'exiting.py'}:wc", "raw://x", status=1)
    one_error(err, "importing 'exiting' exited (code 3)", '`if __name__ == "__main__":`')


def test_a_ctrl_c_while_the_command_line_is_imported_ends_it_as_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In the first fifth of a second, Ctrl-C printed the import's traceback and exited -2.
    from discodsl.__main__ import main as command

    class Interrupting:
        def find_spec(self, name: str, *args: Any) -> None:
            if name == "discodsl.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "discodsl.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert command() == 130


def test_a_param_of_more_digits_than_pythons_str_limit_is_an_int() -> None:
    """-P n=<5,000 digits> reached the stage as a str (int() refused it), 50 as an int."""
    from discodsl.cli.parser import _param

    for digits in (50, 5000):
        name, value = _param("n=" + "7" * digits)
        assert (name, type(value), value) == ("n", int, 10**digits // 9 * 7)


def test_an_input_named_like_an_option_after_double_dash_before_the_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `run -- JOB -data.txt` said "the following arguments are required: INPUT".
    monkeypatch.chdir(tmp_path)
    Path("-data.txt").write_text("a b c\nc a c\n")
    for argv in (["--", WORDCOUNT, "-data.txt"], [WORDCOUNT, "--", "-data.txt"]):
        out, _ = run(capsys, "run", "--inline", *argv)
        assert records(out) == RECORDS


@pytest.mark.parametrize("length", [238, 255])
def test_a_long_legal_output_name_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, length: int
) -> None:
    # Its temporary name beside it was too long: "File name too long", after the run.
    target = tmp_path / ("x" * (length - 4) + ".tsv")
    run(capsys, "run", "--inline", WORDCOUNT, *INPUTS, "-o", str(target))
    assert records(target.read_text()) == RECORDS
    target.write_text("old")
    target.chmod(0o640)
    run(capsys, "run", "--inline", WORDCOUNT, *INPUTS, "-o", str(target))
    assert records(target.read_text()) == RECORDS
    assert target.stat().st_mode & 0o777 == 0o640
    pack = tmp_path / ("p" * (length - 8) + ".jobpack")
    run(capsys, "jobpack", "build", WORDCOUNT, *INPUTS, "-o", str(pack))
    assert json.loads(run(capsys, "jobpack", "show", str(pack))[0])["jobdict"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, pack.name])


@pytest.mark.parametrize("command", [["run", "--inline"], ["jobpack", "build"]])
def test_an_output_name_too_long_is_refused_before_the_job_is_imported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]
) -> None:
    # It crashed with a traceback (OSError from Path.is_dir).
    target = tmp_path / ("y" * 256)
    _, err = run(capsys, *command, "no_such_module:job", "raw://a", "-o", str(target), status=1)
    one_error(err, "cannot write", "File name too long", "shorter name")


def test_a_job_with_a_timeout_is_hinted_an_inline_run_that_works(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hint said --inline, which refuses a job with timeout=, in Python's terms.
    monkeypatch.chdir(tmp_path)
    Path("timed_job.py").write_text(
        "from discodsl import job, map\n"
        "@map\ndef m(line):\n    raise ValueError('bad record ' + line)\n"
        "@job(partitions=None, timeout=600)\ndef timed():\n    return [m]\n"
    )
    _, err = run(capsys, "run", "--local", "timed_job:timed", "raw://a", status=1)
    _, hint = one_error(err, "ValueError")
    assert "--inline --timeout 0" in hint
    _, err = run(capsys, "run", "--inline", "timed_job:timed", "raw://a", status=1)
    one_error(err, "timeout=600", "add --timeout 0")
    with pytest.raises(ValueError, match="bad record a"):  # the stage's traceback, here
        main(["run", "--inline", "--timeout", "0", "timed_job:timed", "raw://a"])


@pytest.mark.parametrize("given", ["analysis.ipynb", "{dir}/analysis.ipynb"])
def test_a_notebook_given_as_the_job_is_refused_before_its_paired_script_runs(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    """``run analysis.ipynb:wc`` imported the module ``analysis``: the notebook's paired
    script beside it ran top to bottom, then the advice was to rename the notebook."""
    (tmp_path / "analysis.ipynb").write_text("{}")
    (tmp_path / "analysis.py").write_text("open('SIDE_EFFECT', 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    code = main(["run", given.format(dir=tmp_path) + ":wc", "in.txt"])
    assert code == 1 and not (tmp_path / "SIDE_EFFECT").exists()
    assert "is no .py file" in capsys.readouterr().err


_PRINTED = st.recursive(
    st.one_of(st.text(max_size=5), st.integers(), st.binary(max_size=3), st.none()),
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.lists(inner, max_size=3),
        st.frozensets(st.one_of(st.text(max_size=3), st.integers()), max_size=4),
        st.sets(st.text(max_size=4), max_size=4),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
    ),
    max_leaves=12,
)


@given(_PRINTED)
def test_a_printed_value_reads_back_as_itself_with_its_sets_in_order(value: Any) -> None:
    from discodsl.recordtext import stable_repr

    shown = stable_repr(value)
    assert shown == repr(value) or "{" in repr(value)  # reordered sets, nothing else
    assert eval(shown, {"__builtins__": {}, "frozenset": frozenset, "set": set}) == value
    if isinstance(value, (set, frozenset)) and all(type(item) is str for item in value):
        assert not value or "{" + ", ".join(map(repr, sorted(value))) + "}" in shown


@given(
    st.one_of(
        st.text(alphabet=st.characters(codec="ascii"), max_size=8),
        st.sampled_from(["None", "True", "False", "set", "a1", "inf", "nan", "b", "x_1", "\\t"]),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.none(),
    )
)
def test_a_tsv_field_reads_back_as_the_format_says(value: Any) -> None:
    # A field that ast.literal_eval reads is that value; any other is the text (escaped).
    # Words and numbers take a shorter way there, which must not change what they print.
    from discodsl.recordtext import write_records

    out = io.StringIO()
    write_records([(value, 1)], out, as_json=False)
    field = out.getvalue().split("\t")[0]
    try:
        read = ast.literal_eval(field)
    except (ValueError, SyntaxError):
        escapes = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
        read = re.sub(r"\\(.)", lambda match: escapes[match[1]], field)
    if isinstance(value, float) and not math.isfinite(value):  # its repr, read as text
        assert field == repr(value)
        return
    assert read == value, (value, field)


def test_the_same_results_print_alike_in_every_process() -> None:
    """A set's items printed in the order of their hashes, which for str change from process
    to process: `run -o FILE` of one job wrote other bytes each time."""
    script = (
        "import sys\n"
        "from discodsl.recordtext import write_records\n"
        "from collections import namedtuple\n"
        "Pair = namedtuple('Pair', 'left right')\n"
        "records = [('k', {'alpha', 'beta', 'gamma', 'delta'}),\n"
        "           (frozenset({'x', 'y'}), [{'p', 'q'}]), ('n', Pair(1, {'s', 'r'}))]\n"
        "write_records(records, sys.stdout, as_json=False)\n"
        "write_records(records, sys.stdout, as_json=True)\n"
    )
    printed = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            check=True,
        ).stdout
        for seed in range(1, 6)
    }
    assert printed == {
        "k\t{'alpha', 'beta', 'delta', 'gamma'}\n"
        "frozenset({'x', 'y'})\t[{'p', 'q'}]\n"
        "n\tPair(left=1, right={'r', 's'})\n"
        "[\"k\", {\"repr\": \"{'alpha', 'beta', 'delta', 'gamma'}\"}]\n"
        "[{\"repr\": \"frozenset({'x', 'y'})\"}, [{\"repr\": \"{'p', 'q'}\"}]]\n"
        '["n", {"repr": "Pair(left=1, right={\'r\', \'s\'})"}]\n'
    }


DECLARING = (
    "from discodsl import job, map\n"
    "@map\ndef lines(line):\n    yield line, 1\n"
    "@job(partitions=None, cache=True, push_inputs=True)\ndef declared():\n    return [lines]\n"
)


def test_quiet_keeps_notices_off_stderr_and_errors_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # A run served from the cache said so on every run, and cron mailed each: no way to
    # keep stderr empty on success but 2>/dev/null, which hid the errors too.
    (tmp_path / "quiet_job.py").write_text(DECLARING)
    job = f"{tmp_path / 'quiet_job.py'}:declared"
    run(capsys, "run", job, "--inline", "raw://a")
    _, err = run(capsys, "run", job, "--inline", "raw://a")
    assert "discodsl: cached results" in err
    out, err = run(capsys, "run", job, "--inline", "raw://a", "-q")
    assert records(out) == {"a": "1"} and err == ""
    _, err = run(capsys, "--quiet", "run", job, "--inline", "nosuchfile.txt", status=1)
    assert "nosuchfile.txt" in err


def test_run_keeps_the_cache_and_push_inputs_a_job_declares_unless_told_otherwise(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, disco_master: DiscoMaster
) -> None:
    # Flags not given passed cache=False and push_inputs=False, over the job's own True:
    # never cached from the command line, and local files sent to a cluster as file://.
    (tmp_path / "declaring_job.py").write_text(DECLARING)
    (tmp_path / "in.txt").write_text("a\n")
    job, data = f"{tmp_path / 'declaring_job.py'}:declared", str(tmp_path / "in.txt")
    assert records(run(capsys, "run", job, "--inline", data)[0]) == {"a": "1"}
    _, err = run(capsys, "run", job, "--inline", data)
    assert "discodsl: cached results of job 'declared'" in err
    assert "--no-cache on the command line" in err
    _, err = run(capsys, "run", job, "--inline", data, "--no-cache")
    assert "cached" not in err
    out, err = run(capsys, "--master", disco_master.url, "run", job, data, "--no-cache")
    assert records(out) == {"a": "1"} and "pushed 1 local input file(s) to DDFS" in err
    _, err = run(capsys, "--master", disco_master.url, "run", job, data, "--no-push-inputs")
    assert "go to the cluster as file:// URLs" in err
    pack = tmp_path / "declared.pack"
    _, err = run(
        capsys, "--master", disco_master.url, "jobpack", "build", job, data, "-o", str(pack)
    )
    assert "pushed 1 local input file(s) to DDFS" in err
    shown = json.loads(run(capsys, "jobpack", "show", str(pack))[0])
    assert "file://" not in json.dumps(shown["jobdict"]["inputs"]), shown["jobdict"]["inputs"]
    build = ("jobpack", "build", job, data, "-o", str(pack), "--no-push-inputs")
    # No master: the job's push_inputs=True is why one is needed, and the way out is said.
    _, err = run(capsys, *build[:-1], status=1)
    assert "pushes its local inputs to DDFS first (push_inputs=True)" in err, err
    assert "--no-push-inputs builds it with file:// inputs" in err, err
    _, err = run(capsys, *build)  # no master needed: nothing to push
    shown = json.loads(run(capsys, "jobpack", "show", str(pack))[0])
    assert "file://" in json.dumps(shown["jobdict"]["inputs"]), shown["jobdict"]["inputs"]
