"""Every URL form discodsl uses, in one module: split, built and mapped to local files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discodsl.worker import urls


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("raw://a b", ("raw", "a b")),
        ("HTTP://h:1/x", ("http", "h:1/x")),
        ("/plain/path", ("", "/plain/path")),
        ("relative.txt", ("", "relative.txt")),
    ],
)
def test_split_gives_the_scheme_lowercased_and_the_rest(url: str, parts: tuple[str, str]) -> None:
    assert urls.split(url) == parts


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("disco://node1/disco/x", "node1"),
        ("http://node1:8989/disco/x", "node1"),
        ("dir://node1/disco/x", "node1"),
        ("raw://abc", "abc"),
        ("http://[::1]/x", "[::1]"),
        ("/plain/path", ""),
    ],
)
def test_preferred_host_is_the_host_as_disco_takes_it(url: str, host: str) -> None:
    assert urls.preferred_host(url) == host


def test_file_urls_round_trip_with_and_without_a_range(tmp_path: Path) -> None:
    path = tmp_path / "a name.txt"
    url = urls.file_url(str(path))
    assert url == path.resolve().as_uri()
    assert urls.file_path(url) == str(path.resolve())
    ranged = urls.with_range(url, 3, 10)
    assert ranged == f"{url}#range=3-10"
    assert urls.file_path(ranged) is None  # a range is not the whole file
    assert urls.file_target(urls.split(ranged)[1]) == (str(path.resolve()), (3, 10))
    assert urls.file_target(urls.split(url)[1]) == (str(path.resolve()), None)
    assert urls.file_path("raw://x") is None
    with pytest.raises(ValueError, match="#range=START-END"):
        urls.file_target("/x#lines=1-2")


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_a_file_url_gives_back_its_path_under_any_file_system_encoding(locale: str) -> None:
    # Under a C locale (ASCII names, other bytes surrogate-escaped), the path came back as
    # its bytes read as UTF-8, which no open() could encode: every input named so failed.
    script = (
        "import os, sys\n"
        "from discodsl.worker import urls\n"
        "name = os.fsdecode(b'/data/caf\\xc3\\xa9 \\xff.txt')\n"
        "url = urls.file_url(name)\n"
        "assert urls.file_path(url) == name, (urls.file_path(url), name)\n"
        "assert urls.file_target(url[len('file://'):] + '#range=0-5') == (name, (0, 5))\n"
        "print(sys.getfilesystemencoding())\n"
    )
    environ = {**os.environ, "LC_ALL": locale, "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("ascii" if locale == "C" else "utf-8")


def test_node_paths_map_disco_and_ddfs_to_their_data_directories() -> None:
    roots = {"disco": "/d/data", "ddfs": "/d/ddfs"}
    assert urls.node_path("disco/h/ab/job/out", roots) == "/d/data/h/ab/job/out"
    assert urls.node_path("ddfs/vol0/blob/x", roots) == "/d/ddfs/vol0/blob/x"
    with pytest.raises(ValueError, match="must start with disco/ or ddfs/"):
        urls.node_path("elsewhere/x", roots)
    with pytest.raises(ValueError, match="points outside disco_data"):
        urls.node_path("disco/../../etc/passwd", roots)
    with pytest.raises(ValueError, match="points outside disco_data"):  # a sibling, same prefix
        urls.node_path("disco/../data_secret/x", roots)
    with pytest.raises(ValueError, match="must start with disco/ or ddfs/"):  # no file part
        urls.node_path("disco/", roots)
    with pytest.raises(ValueError, match="ddfs_data is unknown"):
        urls.node_path("ddfs/x", {"disco": "/d/data", "ddfs": ""})


_SEGMENTS = st.sampled_from(["a", "b", "..", ".", "", "x.y", "..."])


@given(
    root=st.sampled_from(["/d/data", "/d/data/", "/", "/d//data/.", "rel/data"]),
    segments=st.lists(_SEGMENTS, min_size=1, max_size=6),
    absolute=st.booleans(),
)
def test_a_node_path_is_inside_its_root_exactly_when_its_common_path_is_the_root(
    root: str, segments: list[str], absolute: bool
) -> None:
    rest = ("/" if absolute else "") + "/".join(segments)
    if not rest:
        return
    local = os.path.normpath(os.path.join(root, rest))
    try:
        inside = os.path.commonpath([local, os.path.normpath(root)]) == os.path.normpath(root)
    except ValueError:  # an absolute path against a relative root
        inside = False
    if inside:
        assert urls.node_path(f"disco/{rest}", {"disco": root}) == local
    else:
        with pytest.raises(ValueError, match="points outside disco_data"):
            urls.node_path(f"disco/{rest}", {"disco": root})


def test_http_urls_of_a_node_and_the_paths_it_serves() -> None:
    assert urls.http_url("h", 8989, "disco/x") == "http://h:8989/disco/x"
    assert urls.served_path("http://h:8989/disco/x", "h", 8989) == "disco/x"
    assert urls.served_path("http://h:8989/ddfs/x", "h", 8989) == "ddfs/x"
    assert urls.served_path("http://h:9000/disco/x", "h", 8989) is None
    assert urls.served_path("http://other:8989/disco/x", "h", 8989) is None
    assert urls.served_path("http://h:8989/elsewhere/x", "h", 8989) is None
    assert urls.served_path("http://h:bad/disco/x", "h", 8989) is None
    assert urls.served_path("http://h:8989/disco/x", "", 8989) is None


def test_job_urls_from_the_job_home_and_back() -> None:
    url = urls.job_url("h", "h/ab/job@1", ".disco/r", scheme="dir")
    assert url == "dir://h/disco/h/ab/job@1/.disco/r"
    assert urls.is_index(url) and not urls.is_index("disco://h/disco/x")
    assert urls.split_host(urls.split(url)[1]) == ("h", "disco/h/ab/job@1/.disco/r")


def test_a_result_url_as_this_machine_reads_it(tmp_path: Path) -> None:
    here = urls.readable_here("disco://h/disco/h/ab/out", "h", 8989, str(tmp_path))
    assert here == (tmp_path / "h" / "ab" / "out").as_uri()
    assert urls.readable_here("disco://o/disco/x", "h", 8989, str(tmp_path)) == (
        "http://o:8989/disco/x"
    )
    assert urls.readable_here("disco://h/ddfs/x", "h", 8989, str(tmp_path)) == (
        "http://h:8989/ddfs/x"
    )
    assert urls.readable_here("file:///x", "h", 8989, str(tmp_path)) == "file:///x"


@pytest.mark.parametrize(
    ("url", "name"),
    [("tag://logs", "logs"), ("tag://host/logs", "logs"), ("logs", None), ("raw://x", None)],
)
def test_tag_names(url: str, name: str | None) -> None:
    assert urls.tag_name(url) == name
    assert urls.is_tag(url) is (name is not None)


# Path segments as users name files: any text but NUL and "/", odd characters included.
SEGMENTS = st.text(
    alphabet=st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=8,
)


@given(
    segments=st.lists(st.one_of(SEGMENTS, st.sampled_from([".", "..", ""])), max_size=5),
    absolute=st.booleans(),
)
def test_file_url_is_pathlibs_uri_of_the_resolved_path(segments: list[str], absolute: bool) -> None:
    """file_url does without pathlib (a worker's start pays for every import) and gives
    what ``Path(path).resolve().as_uri()`` gives, but for ``@`` and ``:`` kept as they are:
    Disco's reader takes the path of a job's file (``job@704:9a:1``) as it is (probe CN F3)."""
    path = ("/" if absolute else "") + "/".join(segments)
    assert urls.file_url(path) == as_discos_uri(Path(path).resolve())
    assert urls.file_path(urls.file_url(path)) == os.path.realpath(path)


def as_discos_uri(path: Path) -> str:
    """pathlib's URI of ``path``, the ``@`` and ``:`` of job names as they are."""
    return path.as_uri().replace("%40", "@").replace("%3A", ":")


@given(rest=st.lists(SEGMENTS, min_size=1, max_size=4))
def test_a_node_file_is_read_as_pathlibs_uri(rest: list[str]) -> None:
    root = "/srv/disco data/é"  # need not exist: only the URL is made
    url_path = "disco/" + "/".join(rest)
    try:
        expected = as_discos_uri(Path(urls.node_path(url_path, {"disco": root})))
    except ValueError:  # a path leading outside the root: read over HTTP
        expected = f"http://h:8989/{url_path}"
    assert urls.readable_here(f"disco://h/{url_path}", "h", 8989, root) == expected


@pytest.mark.parametrize("data", ["[1, 2]", "a [b] c", '{"q":1}\n[2]', "[::1", "x]"])
def test_a_raw_urls_data_is_never_parsed_as_a_url(data: str) -> None:
    assert urls.file_path(f"raw://{data}") is None
    assert urls.served_path(f"http://[{data}/disco/x", "node", 8989) is None


def test_a_file_urls_path_with_brackets_and_a_host_is_its_path(tmp_path: Path) -> None:
    path = tmp_path / "[a] b?.txt"
    assert urls.file_path(urls.file_url(str(path))) == str(path.resolve())
    assert urls.file_path("file://localhost/tmp/x") == "/tmp/x"


def test_a_port_in_a_disco_url_read_here_gives_way_to_the_nodes() -> None:
    # Local and inline runs read disco://HOST:1234/... at http://HOST:1234:8989/...
    assert (
        urls.readable_here("disco://h:1234/disco/h/ab/j/out", "here", 8989, "")
        == "http://h:8989/disco/h/ab/j/out"
    )


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    # #range=5-3 read nothing, without a word.
    with pytest.raises(ValueError, match="ends before it starts"):
        urls.file_target("/data/x.txt#range=5-3")
    assert urls.file_target("/data/x.txt#range=3-3") == ("/data/x.txt", (3, 3))


def test_a_port_after_an_ipv6_address_gives_way_too() -> None:
    assert urls.host_name("[::1]:8989") == "[::1]" and urls.host_name("[::1]") == "[::1]"
    assert urls.host_name("10.0.0.5:1234") == "10.0.0.5" and urls.host_name("node1") == "node1"


def test_a_range_past_any_files_size_is_refused() -> None:
    # An OverflowError from seek(), in the stage's name.
    with pytest.raises(ValueError, match="past any file's size"):
        urls.file_target("/data/x.txt#range=0-99999999999999999999")
