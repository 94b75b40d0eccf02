"""What a fresh interpreter imports: declaring a job, or running a plain one, needs no
pydantic, requests or tqdm; refused options read as they always did (pydantic words them).

The stdlib check of :mod:`discodsl.options` accepts a value on its own only when pydantic's
strict model would accept it too, with the same result: the differential tests below hold
the two to that, over values of many types.
"""

from __future__ import annotations

import enum
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from discodsl import JobOptions, SettingsError, builder, jobhome
from discodsl.options import option_names, pydantic_model, validate_options
from tests.interpreters import python_output

HEAVY = ("pydantic", "pydantic_core", "pydantic_settings", "requests", "urllib3", "tqdm")
ROOT = Path(__file__).resolve().parent.parent

DECLARE = """
import discodsl
from discodsl import job, map, reduce, stage

@map
def words(line):
    for w in line.split():
        yield w, 1

@reduce(combine=True)
def total(word, counts):
    yield word, sum(counts)

@stage(grouping="group_all")
def everything(records):
    yield from records

@job(partitions=4, params={"sep": ","}, env={"A": "b"}, prefix="wc", workers=2)
def wordcount():
    return [words, total]

@job(timeout=30, max_cores=2)
def everything_at_once():
    return [words, everything]

@job
def bare():
    return [words]

wordcount.with_options(memory_budget=64 * 1024**2, progress=False)
"""

RUN = (
    DECLARE
    + """
results = wordcount.run(inputs=["raw://a b a"], mode={mode!r}, progress=False, workers=None)
assert sorted(results) == [("a", 2), ("b", 1)], list(results)
results.close()
"""
)

REPORT = """
import json, sys
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & set({heavy!r}))))
"""


def loaded_after(code: str, tmp_path: Path) -> list[str]:
    """The heavy packages a fresh interpreter has imported after running ``code``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCO_", "DDFS_"))}
    env["HOME"] = str(tmp_path)  # no ~/.disco settings file naming a master
    printed = python_output(code + REPORT.format(heavy=HEAVY), ROOT, env=env)
    return list(json.loads(printed.splitlines()[-1]))


def test_declaring_a_job_imports_no_pydantic_requests_or_tqdm(tmp_path: Path) -> None:
    assert loaded_after(DECLARE, tmp_path) == []


@pytest.mark.parametrize("mode", [None, "inline", "local"])
def test_running_a_plain_job_imports_no_pydantic_requests_or_tqdm(
    mode: str | None, tmp_path: Path
) -> None:
    code = RUN.replace("{mode!r}", repr(mode))
    assert loaded_after(code, tmp_path) == []


def test_the_public_api_imports_lazily_but_whole(tmp_path: Path) -> None:
    code = "import discodsl\nfor name in discodsl.__all__: getattr(discodsl, name)\n"
    assert loaded_after(code, tmp_path) == []


@pytest.mark.parametrize(
    "argv", [["--help"], ["run", "--help"], ["jobs"], ["cache", "ls"], ["results", "@"]]
)
def test_a_command_with_no_master_imports_no_pydantic_or_requests(
    argv: list[str], tmp_path: Path
) -> None:
    # Every command imported the cluster's client and settings model: 0.17 s of a local
    # command's 0.27 s (probe DC F1).
    code = (
        "import contextlib, io, sys\n"
        "from discodsl.cli import main\n"
        "quiet = contextlib.redirect_stdout(io.StringIO())\n"
        "with quiet, contextlib.redirect_stderr(io.StringIO()):\n"
        f"    try: main({argv!r})\n"
        "    except SystemExit: pass\n"
    )
    assert loaded_after(code, tmp_path) == []


def test_status_of_a_local_run_imports_no_requests(tmp_path: Path) -> None:
    # status said a save_results job's tag through the cluster runner, imported for every
    # run's status (found in review)
    code = RUN.replace("{mode!r}", repr("local")) + (
        "import contextlib, io\n"
        "from discodsl.cli import main\n"
        "said = io.StringIO()\n"
        "with contextlib.redirect_stdout(said):\n"
        "    assert main(['status', '--local', '@']) == 0\n"
        "assert 'ready' in said.getvalue(), said.getvalue()\n"
    )
    assert loaded_after(code, tmp_path) == []


def test_a_refused_value_is_shown_cut_and_an_environment_not_at_all() -> None:
    # env=os.environ printed every variable, tokens included; partitions=list(range(10**6))
    # gave a message of 7.9 MB.
    import os

    from discodsl import job
    from discodsl.errors import SettingsError

    os.environ["DISCODSL_TEST_SECRET"] = "s3cr3t-value"
    try:
        with pytest.raises(SettingsError) as caught:
            job(env=os.environ)
    finally:
        del os.environ["DISCODSL_TEST_SECRET"]
    said = str(caught.value)
    assert "s3cr3t" not in said and "dict(" not in said and "only the names" in said, said
    with pytest.raises(SettingsError) as caught:
        job(partitions=list(range(10**6)))
    assert len(str(caught.value)) < 400, len(str(caught.value))


# Each refused option's whole message, as the pydantic JobOptions model worded it before
# declaring stopped importing pydantic: the words must not change.
REFUSALS: list[tuple[dict[str, Any], str]] = [
    (
        {"partitions": 0},
        "job option partitions=0 is invalid (Input should be greater than or equal to 1): use "
        "an integer from 1 to 100,000, e.g. partitions=4, or None for no partitioning (what "
        "partitions=0 means in Disco)",
    ),
    (
        {"partitions": True},
        "job option partitions=True is invalid (Input should be a valid integer): use an "
        "integer from 1 to 100,000, e.g. partitions=4, or None for no partitioning (what "
        "partitions=0 means in Disco)",
    ),
    (
        {"memory_budget": 10},
        "job option memory_budget=10 is invalid (Input should be greater than or equal to "
        "1048576): give bytes as an integer >= 1 MiB, e.g. memory_budget=256 * 1024**2",
    ),
    (
        {"max_failures": "3"},
        "job option max_failures='3' is invalid (Input should be a valid integer): use an "
        "integer >= 0 (0: fail on the first task error)",
    ),
    (
        {"prefix": "ab\n"},
        "job option prefix='ab\\n' is invalid (String should match pattern "
        "'^[A-Za-z0-9_]+$'): use at most 199 ASCII letters, digits and underscores, e.g. "
        "prefix='ab_' (a job's own name is escaped as Disco's job names must be: "
        "'\u03c3' as 'u03c3')",
    ),
    (
        {"owner": 3},
        "job option owner=3 is invalid (Input should be a valid string): use a string, or None",
    ),
    (
        {"workers": 2.0},
        "job option workers=2.0 is invalid (Input should be a valid integer): use an integer "
        ">= 1, or None for one per CPU core",
    ),
    (
        {"env": {"a": 1}},
        # An environment's values are not shown: they hold tokens and passwords.
        "job option env= is invalid: env['a'] is an int, not a str: use a dict of str to str",
    ),
    (
        {"env": [("a", "b")]},
        "job option env=<a list> is invalid (Input should be a valid dictionary): use a "
        "dict of str to str",
    ),
    (
        {"timeout": float("nan")},
        "job option timeout=nan is invalid (Input should be a finite number): use seconds as a "
        "number > 0 (a year at most), or None to wait for ever",
    ),
    (
        {"timeout": float("inf")},
        "job option timeout=inf is invalid (Input should be a finite number): use seconds as a "
        "number > 0 (a year at most), or None to wait for ever",
    ),
    (
        {"timeout": 1e10},  # past what a thread can wait: the timer's thread failed
        "job option timeout=10000000000.0 is invalid (Input should be less than or equal to "
        "31536000): use seconds as a number > 0 (a year at most), or None to wait for ever",
    ),
    (
        {"timeout": "5"},
        "job option timeout='5' is invalid (Input should be a valid number): use seconds as a "
        "number > 0 (a year at most), or None to wait for ever",
    ),
    (
        {"push_inputs": None},
        "job option push_inputs=None is invalid (Input should be a valid boolean): use True or "
        "False",
    ),
    (
        {"partitons": 2},
        "unknown job option 'partitons' (did you mean partitions=?): the options are "
        f"{', '.join(sorted(option_names()))}",
    ),
    (
        {"bogus": 1, "partitions": 0},
        "job option partitions=0 is invalid (Input should be greater than or equal to 1): use "
        "an integer from 1 to 100,000, e.g. partitions=4, or None for no partitioning (what "
        "partitions=0 means in Disco)",
    ),
]

CHECK_REFUSALS = """
import json
from discodsl import SettingsError, job
for options in eval({cases!r}, {{"nan": float("nan"), "inf": float("inf")}}):
    try:
        job(**options)
    except SettingsError as exc:
        print(json.dumps(str(exc)))
    else:
        print(json.dumps("accepted"))
"""


def test_declaration_time_option_errors_are_worded_as_before() -> None:
    """In a fresh interpreter, as a script declaring a job meets them."""
    code = CHECK_REFUSALS.format(cases=repr([options for options, _ in REFUSALS]))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    got = [json.loads(line) for line in done.stdout.splitlines()]
    assert got == [message for _, message in REFUSALS]
    assert [str(refusal(options)) for options, _ in REFUSALS] == got  # and in this process


def refusal(options: dict[str, Any]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        validate_options(**options)
    return info.value


class Level(enum.IntEnum):
    HIGH = 8


class Text(str):
    pass


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 1023, 1024**2 - 1, 1024**2, 2**53, 2**53 + 1, -(2**53) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 2.0, -1.0, math.inf, -math.inf]),
    st.text(max_size=12),
    st.sampled_from(["wc", "a_b9", "a.b", "", "ab\n", "é", Text("wc")]),
    st.binary(max_size=4),
    st.sampled_from([Level.HIGH, (1, 2), [1], object()]),
)
VALUES = st.one_of(
    SCALARS,
    st.dictionaries(st.one_of(st.text(max_size=3), st.integers()), SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["A", Text("B")]), st.sampled_from(["x", Text("y")])),
)


def by_pydantic(options: dict[str, Any]) -> dict[str, Any] | str:
    """What the pydantic model makes of ``options``: the validated fields, or its first error."""
    try:
        model = pydantic_model()(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{first['type']} at {first['loc']}"
    return {name: getattr(model, name) for name in option_names()}


def by_discodsl(options: dict[str, Any]) -> dict[str, Any] | str:
    try:
        checked = validate_options(**options)
    except SettingsError as exc:
        return str(exc)
    return {name: getattr(checked, name) for name in option_names()}


def same(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (4 is not 4.0), nan equal to nan."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and (a is b or a == b)


@given(name=st.sampled_from(sorted(option_names())), value=VALUES)
def test_the_stdlib_check_accepts_only_what_pydantic_accepts_and_keeps_the_same(
    name: str, value: Any
) -> None:
    mine, theirs = by_discodsl({name: value}), by_pydantic({name: value})
    if isinstance(theirs, str):
        assert isinstance(mine, str), (name, value, mine)
        assert mine.startswith((f"job option {name}", "unknown job option")), mine
    else:
        assert isinstance(mine, dict), (name, value, mine)
        assert all(same(mine[k], theirs[k]) for k in theirs), (mine, theirs)


@given(values=st.dictionaries(st.sampled_from(sorted(option_names())), VALUES, max_size=4))
def test_several_options_at_once_agree_with_pydantic(values: dict[str, Any]) -> None:
    mine, theirs = by_discodsl(values), by_pydantic(values)
    assert isinstance(mine, str) == isinstance(theirs, str), (values, mine, theirs)


def test_the_pydantic_model_is_built_from_the_one_definition() -> None:
    model = pydantic_model()
    assert set(model.model_fields) == option_names()
    assert model.model_config.get("strict") and model.model_config.get("extra") == "forbid"
    defaults = JobOptions()
    for name, info in model.model_fields.items():
        assert same(info.get_default(call_default_factory=True), getattr(defaults, name)), name


def test_a_value_only_pydantic_accepts_is_kept_as_pydantic_makes_it() -> None:
    assert type(validate_options(partitions=Level.HIGH).partitions) is int
    assert validate_options(timeout=5).timeout == 5.0
    assert type(validate_options(timeout=5).timeout) is float


def test_job_options_built_directly_are_checked_too() -> None:
    with pytest.raises(SettingsError, match="partitions=0 is invalid"):
        JobOptions(partitions=0)
    assert JobOptions(partitions=3).partitions == 3


# ---------------------------------------------------------------- the jobhome, kept on disk


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty user cache directory, and no jobhome built yet in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    builder.jobhome.cache_clear()
    yield tmp_path / "cache"
    builder.jobhome.cache_clear()


def fresh_jobhome() -> bytes:
    return jobhome.build_jobhome(jobhome.runtime_files(sys.version_info[:2]))


def test_a_kept_jobhome_is_the_one_built_and_read_back_without_building(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = builder.jobhome()
    assert built == fresh_jobhome()
    assert [p.read_bytes() for p in cache_home.glob("discodsl/jobhome-*.zip")] == [built]
    builder.jobhome.cache_clear()  # a new process
    monkeypatch.setattr(builder, "build_jobhome", refuse_to_build)
    assert builder.jobhome() == built


def refuse_to_build(*args: Any, **kwargs: Any) -> bytes:
    raise AssertionError("built again")


def test_a_changed_runtime_file_names_another_jobhome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "execute.py"
    module.write_text("x = 1\n")
    monkeypatch.setattr(jobhome, "_runtime_origins", lambda: {"discodsl/worker/x.py": module})
    before = jobhome.runtime_key((3, 11))
    assert jobhome.runtime_key((3, 11)) == before
    module.write_text("x = 22\n")
    assert jobhome.runtime_key((3, 11)) != before
    assert jobhome.runtime_key((3, 12)) != jobhome.runtime_key((3, 11))


def test_a_damaged_kept_jobhome_is_built_again(cache_home: Path) -> None:
    built = builder.jobhome()
    (kept,) = cache_home.glob("discodsl/jobhome-*.zip")
    kept.write_bytes(built[:1000])
    builder.jobhome.cache_clear()
    assert builder.jobhome() == built
    assert kept.read_bytes() == built


def test_without_a_writable_cache_the_jobhome_is_built_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    builder.jobhome.cache_clear()
    try:
        assert builder.jobhome() == fresh_jobhome()
    finally:
        builder.jobhome.cache_clear()


def test_only_the_latest_few_jobhomes_are_kept(cache_home: Path) -> None:
    directory = cache_home / "discodsl"
    directory.mkdir(parents=True)
    for n in range(builder.KEPT_JOBHOMES + 3):
        old = directory / f"jobhome-{n:032x}.zip"
        old.write_bytes(b"old")
        os.utime(old, (n, n))
    builder.jobhome()
    kept = sorted(directory.glob("jobhome-*.zip"), key=lambda p: p.stat().st_mtime)
    assert len(kept) == builder.KEPT_JOBHOMES
    assert kept[-1].read_bytes() == fresh_jobhome()
