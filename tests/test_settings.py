"""discodsl.settings: precedence, derived defaults, error messages, the settings file."""

from __future__ import annotations

import getpass
import os
import re
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from discodsl import builder, jobpack, settings, settings_model
from discodsl.errors import SettingsError
from discodsl.options import validate_options
from discodsl.settings import (
    DiscoSettings,
    configured_master,
    load_settings,
    read_settings_file,
)
from tests import jobs
from tests.disco_master import DiscoMaster

WriteFile = Callable[[str], Path]


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteFile:
    """Write a Disco settings file and point DISCO_SETTINGS_FILE at it."""

    def write(text: str) -> Path:
        path = tmp_path / "settings.py"
        path.write_text(text)
        monkeypatch.setenv("DISCO_SETTINGS_FILE", str(path))
        return path

    return write


# -- precedence: keyword arguments > environment > settings file > defaults -----


def test_keyword_beats_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCO_PORT", "9000")
    assert load_settings(DISCO_PORT=9100).DISCO_PORT == 9100


def test_environment_beats_file(settings_file: WriteFile, monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file("DISCO_PORT = 9200\n")
    monkeypatch.setenv("DISCO_PORT", "9000")
    assert load_settings().DISCO_PORT == 9000


def test_file_beats_default(settings_file: WriteFile) -> None:
    path = settings_file('DISCO_PORT = 9200\nDISCO_JOB_OWNER = "ann@lab"\n')
    settings = load_settings()
    assert (settings.DISCO_PORT, settings.DISCO_JOB_OWNER) == (9200, "ann@lab")
    assert (str(path),) == (settings.DISCO_SETTINGS_FILE,)


def test_keyword_beats_file(settings_file: WriteFile) -> None:
    settings_file('DISCO_PROXY = "http://file-proxy:8999"\n')
    assert load_settings(DISCO_PROXY="http://arg-proxy:8999").DISCO_PROXY == "http://arg-proxy:8999"


def test_defaults() -> None:
    settings = load_settings()
    host = socket.gethostname()
    assert (host, f"http://{host}:8989") == (settings.DISCO_MASTER_HOST, settings.DISCO_MASTER)
    owner = f"{getpass.getuser()}@{host}"
    assert owner == settings.DISCO_JOB_OWNER
    assert (settings.DISCO_PORT, settings.DISCO_PROXY) == (8989, "")
    assert (settings.DDFS_READ_TOKEN, settings.DDFS_WRITE_TOKEN) == (None, None)
    assert (settings.DISCODSL_HTTP_TIMEOUT, settings.DISCODSL_RETRIES) == (30.0, 5)


def test_empty_environment_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCO_PORT", "")
    monkeypatch.setenv("DDFS_READ_TOKEN", "")
    settings = load_settings()
    assert (settings.DISCO_PORT, settings.DDFS_READ_TOKEN) == (8989, None)


def test_none_overrides_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCO_MASTER", "http://from-env:8989")
    assert load_settings(DISCO_MASTER=None).DISCO_MASTER == "http://from-env:8989"


# -- DISCO_MASTER ---------------------------------------------------------------


def test_master_derived_from_host_and_port(
    settings_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file('DISCO_MASTER_HOST = "master.example"\n')
    monkeypatch.setenv("DISCO_PORT", "9000")
    assert load_settings().DISCO_MASTER == "http://master.example:9000"
    assert load_settings(DISCO_MASTER_HOST="vm").DISCO_MASTER == "http://vm:9000"


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("http://vm:8989/", "http://vm:8989"),
        ("vm:8989", "http://vm:8989"),
        ("vm", "http://vm:8989"),
        ("  https://master.example:443  ", "https://master.example:443"),
        ("http://vm", "http://vm"),
    ],
)
def test_master_is_normalised(given: str, normalised: str) -> None:
    master = load_settings(DISCO_MASTER=given).DISCO_MASTER
    assert master == normalised


def test_explicit_master_wins_over_host_and_port() -> None:
    settings = load_settings(DISCO_MASTER="http://a:1", DISCO_MASTER_HOST="b", DISCO_PORT=2)
    assert settings.DISCO_MASTER == "http://a:1"


@pytest.mark.parametrize(
    ("master", "port", "expected"),
    [
        ("http://vm:9000", None, 9000),  # the master's port is its nodes' too, as in Disco
        ("vm:9001", None, 9001),
        ("http://vm", None, 8989),
        ("http://vm:9000", "7000", 7000),  # DISCO_PORT set: it is the nodes' port
    ],
)
def test_disco_port_is_the_masters_port_unless_set(
    monkeypatch: pytest.MonkeyPatch, master: str, port: str | None, expected: int
) -> None:
    """A master named with its port and no DISCO_PORT: results were read from the nodes on
    8989, where nothing listened, or something else did."""
    monkeypatch.delenv("DISCO_PORT", raising=False)
    monkeypatch.setenv("DISCO_MASTER", master)
    if port is not None:
        monkeypatch.setenv("DISCO_PORT", port)
    from_environment = load_settings().DISCO_PORT
    monkeypatch.delenv("DISCO_MASTER")
    from_keyword = load_settings(DISCO_MASTER=master).DISCO_PORT
    assert from_environment == from_keyword == expected


# -- invalid values: SettingsError naming field, value, fix, origin ------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "ftp://vm",
            "the master 'ftp://vm' is not a master URL (it is not an http URL): give http://HOST:PORT",
        ),
        ("http://vm:8989/disco", "the master 'http://vm:8989/disco' is not a master URL"),
        ("vm:port", "the master 'vm:port' is not a master URL"),
    ],
)
def test_a_bad_master_given_as_a_keyword_is_named_as_master_not_the_variable(
    value: str, message: str
) -> None:
    """A master=, or --master: it said to set DISCO_MASTER, which the keyword beats."""
    with pytest.raises(SettingsError) as err:
        load_settings(DISCO_MASTER=value)
    assert message in str(err.value) and "(master= or --master)" in str(err.value)
    assert "DISCO_MASTER" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "DISCO_PORT",
            "abc",
            "DISCO_PORT='abc' is not a port number: set DISCO_PORT to an integer 1-65535",
        ),
        ("DISCO_PORT", 0, "DISCO_PORT=0 is not a port number"),
        ("DISCO_PORT", 70000, "DISCO_PORT=70000 is not a port number"),
        ("DISCO_PROXY", "gateway", "DISCO_PROXY='gateway' is not a proxy URL"),
        (
            "DISCODSL_HTTP_TIMEOUT",
            "0",
            "DISCODSL_HTTP_TIMEOUT='0' is not a timeout: "
            "set DISCODSL_HTTP_TIMEOUT to a number of seconds greater than 0, at most 1000000",
        ),
        # past it, every request failed on a raw OverflowError from the socket
        ("DISCODSL_HTTP_TIMEOUT", "inf", "DISCODSL_HTTP_TIMEOUT='inf' is not a timeout"),
        ("DISCODSL_HTTP_TIMEOUT", "1e12", "DISCODSL_HTTP_TIMEOUT='1e12' is not a timeout"),
        ("DISCODSL_RETRIES", -1, "DISCODSL_RETRIES=-1 is not a retry count"),
    ],
)
def test_bad_keyword_values_are_named(name: str, value: object, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(**{name: value})
    assert message in str(err.value)
    assert "(the value came from a keyword argument)" in str(err.value)
    assert isinstance(err.value.__cause__, ValidationError)


def test_bad_environment_value_says_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCO_PORT", "89 89")
    with pytest.raises(
        SettingsError,
        match=r"DISCO_PORT='89 89' is not a port number: .*"
        r"\(the value came from the environment\)",
    ):
        load_settings()


def test_a_master_url_with_port_0_or_a_host_no_url_holds_is_named_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Port 0 was blamed on DISCO_PORT "from the defaults"; a space in the host passed, and
    # the first request said to check DISCO_MASTER, which was not set.
    monkeypatch.delenv("DISCO_PORT", raising=False)
    monkeypatch.setenv("DISCO_MASTER", "http://127.0.0.1:0")
    with pytest.raises(
        SettingsError,
        match=re.escape(
            "DISCO_MASTER='http://127.0.0.1:0' is not a master URL (it has no port from 1 to "
            "65535): set DISCO_MASTER"
        ),
    ):
        load_settings()
    monkeypatch.delenv("DISCO_MASTER")
    for given in ("http://x y:8989", "http://ho\tst:8989", "http://a|b:8989"):
        with pytest.raises(SettingsError, match=re.escape(f"the master {given!r} is not a")):
            load_settings(DISCO_MASTER=given)
    assert load_settings(DISCO_MASTER="http://[::1]:8990").DISCO_MASTER == "http://[::1]:8990"


def test_bad_file_value_names_the_file(settings_file: WriteFile) -> None:
    path = settings_file('DISCODSL_RETRIES = "x"\n')
    with pytest.raises(SettingsError, match=rf"DISCODSL_RETRIES='x' .*the settings file {path}"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [("DISCO_PORT", True), ("DISCODSL_HTTP_TIMEOUT", True), ("DISCODSL_RETRIES", False)],
)
def test_a_bool_in_the_file_where_a_number_goes_is_refused(
    settings_file: WriteFile, name: str, value: bool
) -> None:
    # True was port 1, a timeout of 1 s, and False no retries (probe EG F1).
    path = settings_file(f"{name} = {value}\n")
    problem, expected = settings_model._EXPECTED[name]
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert f"{name}={value} {problem}: set {name} to {expected} " in str(err.value)
    assert f"the settings file {path}" in str(err.value)


def test_a_master_of_another_type_in_the_file_is_named_so(settings_file: WriteFile) -> None:
    # "is not a master URL (it Input should be a valid string)" (probe DV F10).
    settings_file("DISCO_MASTER = ['http://127.0.0.1:1']\n")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "DISCO_MASTER=['http://127.0.0.1:1'] is not a master URL (it is a list, not text)" in (
        str(err.value)
    )


def test_several_bad_values_are_all_named() -> None:
    with pytest.raises(SettingsError) as err:
        DiscoSettings(DISCO_PORT="x", DISCODSL_RETRIES="y")
    assert "DISCO_PORT='x'" in str(err.value) and "DISCODSL_RETRIES='y'" in str(err.value)


def test_unknown_setting_suggests_the_right_name() -> None:
    with pytest.raises(
        SettingsError,
        match=r"DISCO_PROT is not a Disco setting: did you mean "
        r"DISCO_PORT\?",
    ):
        load_settings(DISCO_PROT=9000)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError):
        settings.DISCO_PORT = 1


# -- the settings file ----------------------------------------------------------------


def test_disco_settings_file_is_read_as_literals(settings_file: WriteFile) -> None:
    settings_file(
        '"""Disco settings."""\n'
        "# comments and unknown names are fine\n"
        'DISCO_HOME = "/usr/lib/disco"\n'
        'DISCO_MASTER_HOST = "master"\n'
        "DISCO_PORT = 9000\n"
        "DISCO_JOB_OWNER = 1\n"
        "DDFS_READ_TOKEN: str = 'secret'\n"
    )
    settings = load_settings()
    assert settings.DISCO_MASTER == "http://master:9000"
    assert (settings.DISCO_JOB_OWNER, settings.DDFS_READ_TOKEN) == ("1", "secret")


def test_home_disco_is_the_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISCO_SETTINGS_FILE")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".disco").write_text('DISCO_MASTER_HOST = "from-home"\n')
    settings = load_settings()
    home = tmp_path / ".disco"
    assert ("from-home", str(home)) == (settings.DISCO_MASTER_HOST, settings.DISCO_SETTINGS_FILE)


def test_settings_file_can_be_chosen_by_keyword(tmp_path: Path) -> None:
    path = tmp_path / "other.py"
    path.write_text("DISCO_PORT = 9300\n")
    assert load_settings(DISCO_SETTINGS_FILE=str(path)).DISCO_PORT == 9300


def test_missing_named_settings_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DISCO_SETTINGS_FILE", str(tmp_path / "nope.py"))
    with pytest.raises(SettingsError, match=r"DISCO_SETTINGS_FILE=.*nope.py.*no such file"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('DISCO_PORT = int("8989")\n', r":1: DISCO_PORT = int\('8989'\) is not a literal"),
        ('DISCO_MASTER_HOST = "m"\nDISCO_PORT = 8000 + 989\n', r":2: DISCO_PORT = 8000 \+ 989"),
        ("if True:\n    DISCO_PORT = 1\n", r":1: only NAME = value lines are allowed, found"),
        ("DISCO_PORT, X = 1, 2\n", r":1: only NAME = value .*sets DISCO_PORT: .*assign one"),
        ("DISCO_PORT = \n", r":1: not valid Python"),
        ('DISCO_PORT = 1\nDISCO_MASTER_HOST = "a\0b"\n', r":2: not valid Python \(a NUL byte"),
        ("for DISCO_PORT in (1,):\n    pass\n", r":1: only NAME = value lines"),
    ],
)
def test_unsafe_settings_file_is_refused(settings_file: WriteFile, text: str, message: str) -> None:
    path = settings_file(text)
    with pytest.raises(SettingsError, match=rf"^{path}{message}"):
        load_settings()


def test_what_disco_runs_in_its_settings_file_is_ignored_unless_it_sets_ours(
    settings_file: WriteFile,
) -> None:
    # Disco's client runs its settings file: an import, a computed DISCO_DATA, a call made
    # every discodsl command and run fail, though discodsl reads none of them (probe CN F2).
    settings_file(
        "import os\n"
        'DISCO_ROOT = "/srv/disco"\n'
        'DISCO_DATA = os.path.join(DISCO_ROOT, "data")\n'
        'os.environ["X"] = "1"\n'
        "def helper():\n    return 1\n"
        "def f():\n    DISCO_PORT = 5\n"  # a function's, a class's: none of the file's names
        "class C:\n    DISCO_PORT = 5\n"
        "X = [DISCO_PORT for DISCO_PORT in range(3)]\n"
        'DISCO_MASTER_HOST = "m"\n'
    )
    assert load_settings().DISCO_MASTER == "http://m:8989"
    assert "X" not in os.environ or os.environ["X"] != "1"


def test_a_computed_setting_is_refused_only_where_it_is_needed(
    settings_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DISCO_MASTER_HOST = socket.gethostname(), which Disco's client runs, failed every run
    # and command, given master= or DISCO_MASTER in the environment too (probe CR F7).
    settings_file("import socket\nDISCO_MASTER_HOST = socket.gethostname()\nDISCO_PORT = 8989\n")
    assert load_settings(DISCO_MASTER="http://m:9000").DISCO_MASTER == "http://m:9000"
    monkeypatch.setenv("DISCO_MASTER_HOST", "other")
    assert load_settings().DISCO_MASTER == "http://other:8989"
    monkeypatch.delenv("DISCO_MASTER_HOST")
    with pytest.raises(SettingsError, match=r"DISCO_MASTER_HOST = socket\.gethostname"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "from site_disco import DISCO_MASTER\n",
            r"found 'from site_disco .*', which sets DISCO_MASTER",
        ),
        ("import DISCO_MASTER\n", r"which sets DISCO_MASTER"),
        ("from x import y as DISCO_MASTER_HOST\n", r"which sets DISCO_MASTER_HOST"),
        ("X = [(DISCO_PORT := 5) for _ in (1,)]\n", r"which sets DISCO_PORT"),
    ],
)
def test_a_setting_an_import_or_a_walrus_gives_is_refused_where_it_is_needed(
    settings_file: WriteFile, text: str, message: str
) -> None:
    # Only assignments' names counted: Disco's client took the master an import gave, and
    # discodsl silently ran locally (probe CS F8).
    path = settings_file(text)
    with pytest.raises(SettingsError, match=rf"^{path}:1: only NAME = value lines .*{message}"):
        load_settings()
    assert load_settings(DISCO_MASTER="http://m:9000").DISCO_MASTER == "http://m:9000"


def test_an_import_of_everything_in_the_settings_file_is_warned_of(
    settings_file: WriteFile,
) -> None:
    # It may set any setting, which Disco's client would take: it was silently ignored
    # (probe CS F8).
    path = settings_file("try:\n    from local_disco import *\nexcept ImportError:\n    pass\n")
    with pytest.warns(UserWarning) as caught:
        assert load_settings(DISCO_MASTER="http://m:9000").DISCO_MASTER == "http://m:9000"
        load_settings(DISCO_MASTER="http://m:9000")
    assert [(w.filename, w.lineno) for w in caught] == [(str(path), 2)]
    assert str(caught[0].message).startswith(
        "'from local_disco import *' may set settings, which discodsl does not see: it reads "
        "the settings file, never runs it; write the settings discodsl reads there as plain "
        "values (DISCO_"
    )


def test_settings_file_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "settings.py"
    path.write_text(f"DISCO_MASTER_HOST = __import__('pathlib').Path({str(marker)!r}).touch()\n")
    refused = read_settings_file(path)["DISCO_MASTER_HOST"]  # refused where it is needed
    assert re.search(
        r"DISCO_MASTER_HOST = .* is not a literal: the settings file is read, never run",
        str(refused.error),
    )
    assert not marker.exists()


# -- settings discodsl does not use ------------------------------------------------


def test_settings_discodsl_does_not_use_are_ignored(settings_file: WriteFile) -> None:
    """DISCO_EVENTS, DISCO_DEBUG and DDFS_PUT_PORT are Disco's; discodsl has no use for them."""
    settings_file('DISCO_EVENTS = "json"\nDISCO_DEBUG = "on"\nDDFS_PUT_PORT = "x"\n')
    assert load_settings().DISCO_PORT == 8989
    with pytest.raises(
        SettingsError, match=r"DDFS_PUT_PORT is a Disco setting discodsl does not use"
    ):
        load_settings(DDFS_PUT_PORT=8990)


def test_a_misspelt_setting_in_the_file_is_ignored_with_a_warning_at_its_line(
    settings_file: WriteFile,
) -> None:
    """A name no one reads would silently not count: DISCO_MASTR would run jobs locally."""
    path = settings_file('DISCO_PORT = 9000\nDISCO_MASTR = "http://m:8989"\nDDFS_DATE = "/x"\n')
    with pytest.warns(UserWarning) as caught:
        assert load_settings().DISCO_MASTER.endswith(":9000")  # DISCO_MASTR did not count
    warned = {(str(w.message), w.filename, w.lineno) for w in caught}
    assert warned == {
        (
            "DISCO_MASTR is not a setting of Disco's or discodsl's, and is ignored: "
            "did you mean DISCO_MASTER?",
            str(path),
            2,
        ),
        (
            "DDFS_DATE is not a setting of Disco's or discodsl's, and is ignored: discodsl "
            "reads " + ", ".join(settings.NAMES) + " there",
            str(path),
            3,
        ),
    }


def test_a_misspelt_setting_is_warned_of_once_though_the_warnings_filters_change(
    settings_file: WriteFile,
) -> None:
    """The warnings registry that kept it to once is emptied by any change of the filters
    (an import may make one): a program's first cluster run warned twice."""
    settings_file('DISCO_MASTR = "http://m:8989"\n')
    with pytest.warns(UserWarning) as caught:
        load_settings()
        warnings.simplefilter("default")
        load_settings()
    assert [str(w.message).split(",")[0] for w in caught] == [
        "DISCO_MASTR is not a setting of Disco's or discodsl's"
    ]


def test_an_environment_setting_of_discodsl_in_the_file_is_said_to_belong_there(
    settings_file: WriteFile,
) -> None:
    """DISCODSL_CACHE_DIR in the settings file was called no setting of discodsl's, and
    DISCODSL_HTTP_TIMEOUT suggested in its place."""
    settings_file('DISCODSL_CACHE_DIR = "/data/cache"\nDISCODSL_RETRYS = 3\n')
    with pytest.warns(UserWarning) as caught:
        load_settings()
    assert [str(w.message) for w in caught] == [
        "DISCODSL_CACHE_DIR is not read from the settings file (set it in the environment), "
        "and is ignored: discodsl reads " + ", ".join(settings.NAMES) + " there",
        "DISCODSL_RETRYS is not a setting of Disco's or discodsl's, and is ignored: did you "
        "mean DISCODSL_RETRIES?",
    ]


def test_disco_own_settings_and_other_names_in_the_file_are_ignored_quietly(
    settings_file: WriteFile,
) -> None:
    settings_file(
        'DISCO_HOME = "/usr/lib/disco"\nDDFS_TAG_REPLICAS = 3\nDISCO_PROXY_PORT = 8999\n'
        'DISCO_WORKER_MAX_MEM = "80%"\nMY_OWN = 1\nDISCO_EVENTS = "json"\n'
        # no setting's names, misspelt or not: they only begin alike
        'DISCOVERY_URL = "http://consul:8500"\nDDFSTOOLS = "/opt"\nDISCODSL = 1\n'
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_settings().DISCO_PORT == 8989


def test_the_settings_discodsl_reads_are_the_models_fields() -> None:
    assert set(settings.NAMES) == set(DiscoSettings.model_fields)
    assert not set(settings.UNUSED) - settings.DISCO_OWN


# -- which master: the settings file selects the cluster as the environment does --


@pytest.fixture
def no_home_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No DISCO_SETTINGS_FILE, and a HOME of its own: ~/.disco is ``tmp_path/.disco``."""
    monkeypatch.delenv("DISCO_SETTINGS_FILE")
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path / ".disco"


def test_no_master_is_configured_by_default(no_home_file: Path) -> None:
    assert configured_master() is None
    assert configured_master("vm:9000") == "http://vm:9000"


@pytest.mark.parametrize(
    ("line", "url"),
    [
        ('DISCO_MASTER = "vm:9000"', "http://vm:9000"),
        ('DISCO_MASTER_HOST = "vm"', "http://vm:8989"),
    ],
)
def test_master_configured_in_home_disco(no_home_file: Path, line: str, url: str) -> None:
    no_home_file.write_text(line + "\n")
    assert configured_master() == url


def test_cluster_mode_with_no_master_configured_says_how_to_name_one(
    no_home_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not Disco's own fallback to http://<this host>:8989, as the command line refuses it."""
    monkeypatch.delenv("DISCO_MASTER", raising=False)
    with pytest.raises(SettingsError, match=r"mode='cluster' needs a Disco master: pass master="):
        jobs.wordcount.run(inputs=["raw://a"], mode="cluster")


def test_master_configured_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCO_MASTER_HOST", "vm")
    assert configured_master() == "http://vm:8989"


def test_a_master_in_the_settings_file_runs_jobs_on_the_cluster(
    disco_master: DiscoMaster, settings_file: WriteFile
) -> None:
    settings_file(
        f"DISCO_MASTER = {disco_master.url!r}\nDISCO_PORT = {disco_master.port}\n"
        "DISCODSL_RETRIES = 0\n"
    )
    results = jobs.wordcount.run(inputs=["raw://a b c", "raw://c a c"])
    assert (results.mode, dict(results)) == ("cluster", {"a": 2, "b": 1, "c": 3})
    assert disco_master.jobs.get(results.jobname) is not None


# -- the job owner ------------------------------------------------------------------


def _owner(**options: object) -> str:
    job = jobs.wordcount
    pack = builder.build_jobpack(job, validate_options(job.options, **options), [["raw://a"]])
    return str(jobpack.decode(pack).jobdict["owner"])


def test_job_owner_is_login_at_host_by_default() -> None:
    assert _owner() == f"{getpass.getuser()}@{socket.gethostname()}"


def test_disco_job_owner_reaches_the_jobdict(
    settings_file: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file('DISCO_JOB_OWNER = "from-file@lab"\n')
    assert _owner() == "from-file@lab"
    monkeypatch.setenv("DISCO_JOB_OWNER", "from-env@lab")
    assert _owner() == "from-env@lab"
    assert _owner(owner="given@lab") == "given@lab"


def test_a_computed_job_owner_fails_a_cluster_jobpack_but_no_local_run(
    settings_file: WriteFile,
) -> None:
    # A local run failed where an inline one did not (probe CS F10): its owner, a label no
    # one needs here, is the default.
    settings_file('import getpass\nDISCO_JOB_OWNER = getpass.getuser() + "@box"\n')
    assert sorted(jobs.wordcount.run(["raw://a b a"], mode="local", progress=False)) == [
        ("a", 2),
        ("b", 1),
    ]
    with pytest.raises(SettingsError, match=r":2: DISCO_JOB_OWNER = .* is not a literal"):
        _owner()


@pytest.mark.parametrize("host", ["http://master", "a b", "5", "master/x"])
def test_a_master_host_that_is_no_host_name_is_refused(host: str) -> None:
    with pytest.raises(SettingsError, match=r"DISCO_MASTER_HOST=.* is not a host name: set "):
        load_settings(DISCO_MASTER_HOST=host)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("10.0.0.5", "http://10.0.0.5:8989"),
        ("::1", "http://[::1]:8989"),
        ("m-1.x", "http://m-1.x:8989"),
    ],
)
def test_a_master_host_makes_the_master_url(host: str, url: str) -> None:
    assert url == load_settings(DISCO_MASTER_HOST=host).DISCO_MASTER


@pytest.mark.parametrize(
    "given", ["HTTP://Master.Lab:8989", "http://MASTER.lab:8989/", "Master.LAB"]
)
def test_a_master_url_is_one_spelling_whatever_the_case_of_its_scheme_and_host(given: str) -> None:
    # A chained cluster job compares its inputs' master with its own: spelt HTTP://, it was
    # another, and its nodes were given this client's http://NODE:PORT reading (probe CM F8).
    assert load_settings(DISCO_MASTER=given).DISCO_MASTER == "http://master.lab:8989"
    # An IPv6 zone names an interface, whose name's case counts (probe CR S2).
    zoned = "http://[FE80::1%Eth0]:8989"
    assert load_settings(DISCO_MASTER=zoned).DISCO_MASTER == "http://[fe80::1%Eth0]:8989"


@pytest.mark.parametrize("content", [b"\xff\xfe", None])
def test_an_unreadable_settings_file_says_what_to_do(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "settings.py"
    if content is None:
        path.mkdir()  # a directory where the file should be
    else:
        path.write_bytes(content)
    with pytest.raises(SettingsError) as err:
        load_settings(DISCO_SETTINGS_FILE=str(path))
    assert str(err.value).startswith(f"cannot read the settings file {path}: ")
    assert str(err.value).endswith("fix it, or name another with DISCO_SETTINGS_FILE")


def test_a_bare_number_is_no_master() -> None:
    with pytest.raises(SettingsError, match=r"the master '5' is not a master URL"):
        load_settings(DISCO_MASTER="5")


@pytest.mark.parametrize("variable", ["DISCODSL_RUNS_DIR", "DISCODSL_CACHE_DIR"])
def test_a_place_given_with_a_tilde_or_relative_is_a_fixed_absolute_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    """``DISCODSL_RUNS_DIR='~/runs'`` made a directory named ``~`` in the working directory,
    and a relative place moved with it."""
    from discodsl import places

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(variable, "~/kept")
    assert places.place("x", variable) == tmp_path / "home" / "kept"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, "relative")
    assert places.place("x", variable) == tmp_path / "relative"


_OURS = {"DISCODSL_RUNS_DIR", "DISCODSL_CACHE_DIR", "DISCO_SETTINGS_FILE"}


def test_a_test_sees_none_of_the_developers_settings() -> None:
    """What the suite's autouse fixture leaves a test: its own settings, no one else's."""
    leaked = [
        name
        for name in os.environ
        if name.startswith(("DISCO_", "DDFS_", "DISCODSL_"))
        and name not in _OURS
        and not name.startswith("DISCODSL_TEST_")
    ]
    assert leaked == []


def test_the_developers_settings_are_cleared_for_every_test() -> None:
    """The test above, run with a developer's settings in the environment (they would change
    retries, workers and timeouts under every test)."""
    developer = {
        "DISCODSL_RETRIES": "0",
        "DISCODSL_NO_FORKSERVER": "1",
        "DISCODSL_HTTP_TIMEOUT": "0.1",
        "DISCO_MASTER": "http://example.invalid:8989",
        "DDFS_DATA": "/nonexistent",
    }
    test = f"{__file__}::test_a_test_sees_none_of_the_developers_settings"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", test],
        env={**os.environ, **developer},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_an_http_timeout_in_the_environment_that_is_none_is_refused_on_every_runner(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster run refused DISCODSL_HTTP_TIMEOUT=abc; a local or inline run's workers took
    # it for the default, 60 s a stall, without a word.
    monkeypatch.setenv("DISCODSL_HTTP_TIMEOUT", "abc")
    with pytest.raises(SettingsError, match=r"DISCODSL_HTTP_TIMEOUT='abc' is not a timeout"):
        jobs.wordcount.run(["raw://a"], mode=mode)
    got = jobs.wordcount.run(["raw://a"], mode=mode, env={"DISCODSL_HTTP_TIMEOUT": "5"})
    assert list(got) == [("a", 1)]  # env= gives the workers their own
    monkeypatch.setenv("DISCODSL_HTTP_TIMEOUT", "")  # empty: unset, as every setting
    assert list(jobs.wordcount.run(["raw://a"], mode=mode)) == [("a", 1)]


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("http://master:8989/index.html", "(it has a path or query after http://master:8989)"),
        ("http://127.0.0.1:99999", "(it has no port from 1 to 65535)"),
        ("http://ann:s3cr3t@master:8989", "(it holds a user name or password"),
        # A query's values (a dashboard's token) are not shown; an @ of a path hides no host.
        ("http://disco:8989/?token=s3cr3t", "'http://disco:8989/?...' is not a master URL"),
        ("http://disco:8989/a@b", "'http://disco:8989/a@b' is not a master URL (it has a path"),
        # A stray ? or #, or an empty port, passed, and every request missed.
        ("http://127.0.0.1:8989?", "(it has a path or query after http://127.0.0.1:8989)"),
        ("http://127.0.0.1:8989#", "(it has a path or query after http://127.0.0.1:8989)"),
        ("http://127.0.0.1:", "(it has no port from 1 to 65535)"),
    ],
)
def test_a_master_url_refused_says_why_and_shows_no_password(given: str, why: str) -> None:
    # "is not a master URL: give http://HOST:PORT", the reason worked out and dropped; a
    # password was taken, and printed in every later error.
    with pytest.raises(SettingsError) as caught:
        load_settings(DISCO_MASTER=given)
    said = str(caught.value)
    assert why in said and "s3cr3t" not in said, said


@pytest.mark.parametrize("host", ["10.0.0.5:8989", "cafe:1"])
def test_a_master_host_with_its_port_is_refused_naming_the_host_setting(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10.0.0.5:8989 passed for an IPv6 address, and the first request failed with
    # http://[10.0.0.5:8989]:8989, saying to check DISCO_MASTER, which was not set.
    monkeypatch.delenv("DISCO_MASTER", raising=False)
    monkeypatch.setenv("DISCO_MASTER_HOST", host)
    with pytest.raises(SettingsError, match=re.escape(f"DISCO_MASTER_HOST={host!r} is not")):
        load_settings()


@pytest.mark.parametrize("mode", ["local", "inline"])
def test_a_bad_master_is_refused_on_a_run_here_too(mode: str) -> None:
    # Only a run that chose its mode checked master=; a local or inline one took any, until
    # the day a tag:// input was added.
    from tests import jobs

    with pytest.raises(SettingsError, match="the master 'ftp://not a url' is not a master URL"):
        jobs.wordcount.run(["raw://x"], mode=mode, master="ftp://not a url")


@pytest.mark.parametrize(
    "given",
    [
        "http://user:p@ss@host:8989",
        "http://user:pa/ss@host:8989",
        "http://s3cr3t@host:8989",
        "user:s3cr3t@host:8989",
    ],
)
def test_no_part_of_a_master_urls_user_part_is_shown(given: str) -> None:
    secret = "s3cr3t" if "s3cr3t" in given else "ss"
    with pytest.raises(SettingsError) as caught:
        load_settings(DISCO_MASTER=given)
    said = str(caught.value)
    assert "***@host" in said and f"{secret}@" not in said and ":p@" not in said, said
    assert caught.value.__cause__ is None  # no chained error holding the value whole


def test_a_bare_ipv6_master_says_to_bracket_it_and_a_host_setting_must_be_an_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SettingsError, match=r"IPv6 address without its brackets: write \[::1\]"):
        load_settings(DISCO_MASTER="::1")
    monkeypatch.delenv("DISCO_MASTER", raising=False)
    for host in ("10.0.0.5::8989", "1.2.3.4:5:6", "user:pw@host"):
        monkeypatch.setenv("DISCO_MASTER_HOST", host)
        with pytest.raises(SettingsError, match=r"DISCO_MASTER_HOST=.* is not a host name"):
            load_settings()
    monkeypatch.setenv("DISCO_MASTER_HOST", "::1")
    assert load_settings().DISCO_MASTER == "http://[::1]:8989"


def test_a_proxy_with_a_user_part_is_refused_unshown(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib cannot send it: reads failed as "Name or service not known", its password shown.
    monkeypatch.setenv("DISCO_PROXY", "http://u:PROXYPASS@127.0.0.1:9")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "DISCO_PROXY" in str(caught.value) and "PROXYPASS" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "meant"), [("DISCO_MASTR", "DISCO_MASTER"), ("DISCO_MASTER_PORT", "DISCO_PORT")]
)
def test_a_setting_misspelt_in_the_environment_is_warned_of_at_the_users_line(
    monkeypatch: pytest.MonkeyPatch, name: str, meant: str
) -> None:
    # DISCO_MASTR=... ran the job here, without a word, where the file's typo is warned of;
    # the warning then pointed at discodsl/settings.py, and DISCO_MASTER_PORT got
    # DISCO_MASTER_HOST.
    from discodsl.settings import configured_master

    monkeypatch.delenv("DISCO_MASTER", raising=False)
    monkeypatch.delenv("DISCO_MASTER_HOST", raising=False)
    monkeypatch.setenv(name, "http://127.0.0.1:1")
    monkeypatch.setenv("DISCO_SETTINGS_FILE", "/dev/null")
    with pytest.warns(UserWarning, match=rf"{name} in the environment .*{meant}\?") as warned:
        assert configured_master() is None
    assert warned[0].filename == __file__


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("DISCODSL_HTTP_TIMOUT", "DISCODSL_HTTP_TIMEOUT"),
        ("DDFS_READ_TOKN", "DDFS_READ_TOKEN"),
        ("DISCODSL_CACHE_SZE", "DISCODSL_CACHE_SIZE"),
        ("DISCODSL_RUN_DIR", "DISCODSL_RUNS_DIR"),
        ("DISCODSL_NO_FORKSERVR", "DISCODSL_NO_FORKSERVER"),
    ],
)
def test_a_variable_misspelt_in_the_environment_is_warned_of_with_a_master_too(
    monkeypatch: pytest.MonkeyPatch, name: str, meant: str
) -> None:
    # Only without a master, and never for discodsl's own variables that are no settings
    # (probe CV F2).
    from discodsl.settings import configured_master

    monkeypatch.setenv("DISCO_MASTER", "http://m:9000")
    monkeypatch.setenv(name, "5")
    monkeypatch.setenv("DISCO_SETTINGS_FILE", "/dev/null")
    with pytest.warns(UserWarning, match=rf"{name} in the environment .*{meant}\?"):
        assert configured_master() == "http://m:9000"


def test_every_variable_discodsl_reads_is_known_to_the_misspelling_check() -> None:
    from discodsl import worker
    from discodsl.caching import store
    from discodsl.runners import forkserver, registry
    from discodsl.worker import capture

    read = {store.DIR_ENV, store.SIZE_ENV, registry.RUNS_ENV, forkserver.DISABLE_ENV}
    read |= {worker.PATH_ENV, worker.FORKSERVER_ENV, capture.MESSAGE_ENV, capture.PACE_ENV}
    assert read <= settings.ENVIRONMENT_ONLY


@pytest.mark.parametrize(
    "name", ["DISCO_MASTER_PID", "DISCO_SETTINGS", "DISCO_LOCAL_CLUSTER", "DISCO_SORT_BUFFER_SIZE"]
)
def test_the_variables_disco_itself_sets_are_not_warned_of(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # A Disco node starts every worker with DISCO_MASTER_PID set: "did you mean DISCO_MASTER?"
    from discodsl.settings import configured_master

    monkeypatch.delenv("DISCO_MASTER", raising=False)
    monkeypatch.delenv("DISCO_MASTER_HOST", raising=False)
    monkeypatch.setenv(name, "/var/lib/disco/run/Master-vm_8989.pid")
    monkeypatch.setenv("DISCO_SETTINGS_FILE", "/dev/null")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert configured_master() is None


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_the_command_line_tells_a_misspelt_variable_in_its_own_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], quiet: list[str]
) -> None:
    # It pointed at the console script's `sys.exit(main())`, and -q (for cron) kept it.
    from discodsl.cli import main

    monkeypatch.delenv("DISCO_MASTER", raising=False)
    monkeypatch.delenv("DISCO_MASTER_HOST", raising=False)
    monkeypatch.setenv("DISCO_MASTR", "http://127.0.0.1:1")
    monkeypatch.setenv("DISCO_SETTINGS_FILE", "/dev/null")
    monkeypatch.setattr("discodsl.settings._WARNED", set())
    assert main(["run", *quiet, "--inline", "tests.jobs:wordcount", "raw://a b a"]) == 0
    err = capsys.readouterr().err
    if quiet:
        assert err == ""
    else:
        assert err.splitlines() == [
            "discodsl: warning: DISCO_MASTR in the environment is not a setting of Disco's or "
            "discodsl's, and is ignored: did you mean DISCO_MASTER?"
        ]


def test_the_command_line_tells_a_misspelt_name_in_a_settings_file_at_its_line(
    settings_file: WriteFile, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Told as the environment's was: which file of ~/.disco, DISCO_SETTINGS_FILE or a
    # team's, and which line, was no longer said.
    from discodsl.cli import main

    monkeypatch.delenv("DISCO_MASTER", raising=False)
    path = settings_file('DISCO_PORT = 9000\nDISCO_MASTR = "http://127.0.0.1:1"\n')
    assert main(["run", "--inline", "tests.jobs:wordcount", "raw://a b a"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"discodsl: warning: {path}:2: DISCO_MASTR is not a setting of Disco's or discodsl's, "
        "and is ignored: did you mean DISCO_MASTER?"
    ]


def test_the_no_port_hint_takes_the_port_disco_port_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from discodsl.http import MASTER, _reachable

    monkeypatch.setenv("DISCO_PORT", "9999")
    assert "http://master:9999?" in _reachable("http://master", MASTER)
