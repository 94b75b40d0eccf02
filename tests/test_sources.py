"""What users pass as inputs, resolved; big local files cut so every core gets work."""

from __future__ import annotations

import bz2
import gzip
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from discodsl import JobError, sources
from discodsl.worker import urls
from tests import jobs


def test_paths_globs_directories_and_urls(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.txt", "b.txt", "sub/c.txt", ".hidden"):
        (tmp_path / name).write_text("x\n")
    by_dir = sources.resolve(tmp_path)
    assert [Path(u[0][len("file://") :]).name for u in by_dir] == ["a.txt", "b.txt", "c.txt"]
    assert sources.resolve(str(tmp_path / "*.txt")) == by_dir[:2]
    assert sources.resolve(["raw://hi", ["http://a/x", "http://b/x"]]) == [
        ["raw://hi"],
        ["http://a/x", "http://b/x"],
    ]
    with pytest.raises(JobError, match="matches no file"):
        sources.resolve(str(tmp_path / "missing-*.csv"))
    (tmp_path / "empty" / ".only-hidden").mkdir(parents=True)
    with pytest.raises(JobError, match="is a directory holding no files"):
        sources.resolve(tmp_path / "empty")
    with pytest.raises(JobError, match="not a path, a URL"):
        sources.resolve([42])
    os.mkfifo(tmp_path / "fifo")  # it exists: "matches no file" sent the user looking for it
    fifo_url = urls.file_url(str(tmp_path / "fifo"))  # a run opening it hung for good
    for special in (tmp_path / "fifo", "/dev/null", fifo_url, [fifo_url], "file:///dev/stdin"):
        with pytest.raises(JobError, match=r"is not a regular file .*write other data to a file"):
            sources.resolve(special)
    with pytest.raises(JobError, match=r"is not a regular file \(a directory given as a URL"):
        sources.resolve(urls.file_url(str(tmp_path / "sub")))
    with pytest.raises(JobError, match=r"not a path, a URL.*\(decode it: 'a\.txt'\)"):
        sources.resolve([b"a.txt"])


@pytest.mark.parametrize("pattern", ["**", "**/*", "**/*.txt", "sub/**", "*", "sub", "."])
def test_a_pattern_names_each_file_once(tmp_path: Path, pattern: str) -> None:
    for name in ("top.txt", "sub/mid.txt", "sub/deeper/low.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "sub" / "mid.txt")
    (tmp_path / "hard.txt").hardlink_to(tmp_path / "top.txt")  # the same file: once
    resolved = [replicas[0] for replicas in sources.resolve(f"{tmp_path}/{pattern}")]
    files = {os.stat(urls.file_path(url) or "").st_ino for url in resolved}
    assert resolved and len(resolved) == len(files), resolved


def test_a_directory_reads_what_its_links_point_at_as_its_glob_does(tmp_path: Path) -> None:
    """A linked directory's files were dropped without a word (``top/**`` read them)."""
    (tmp_path / "data" / "deep").mkdir(parents=True)
    for name in ("data/one.txt", "data/deep/two.txt", "top/own.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / "top" / "linked").symlink_to(tmp_path / "data")
    (tmp_path / "top" / "again").symlink_to(tmp_path / "data")  # the same directory: once
    (tmp_path / "data" / "up").symlink_to(tmp_path / "top")  # a loop: walked once
    names = sorted(Path(u[0]).name for u in sources.resolve(tmp_path / "top"))
    assert names == ["one.txt", "own.txt", "two.txt"]
    (tmp_path / "top" / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(JobError, match=r"dangling'? is a link to nothing \(its target is gone"):
        sources.resolve(tmp_path / "top")
    (tmp_path / "top" / "dangling").unlink()
    (tmp_path / "top" / "loop").symlink_to(tmp_path / "top" / "loop")
    with pytest.raises(JobError, match=r"loop'? is a link to nothing"):
        sources.resolve(tmp_path / "top")


@pytest.mark.parametrize("pattern", ["**", "**/*.txt", "*/**", "sub/**", "**/sub/**"])
def test_a_recursive_glob_over_a_link_loop_reads_what_the_directory_does(
    tmp_path: Path, pattern: str
) -> None:
    """``dir/**`` over ``sub/up -> ..`` went round to the 40-link limit, then blamed a
    good link at that depth ("a link to nothing ... remove the link")."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "f.txt").write_text("x\n")
    (tmp_path / "sub" / "g.txt").write_text("y\n")
    (tmp_path / "sub" / "up").symlink_to("..")  # as `ln -s .. up`
    (tmp_path / "link.txt").symlink_to("f.txt")

    def inodes(given: str | Path) -> list[int]:
        return sorted(os.stat(urls.file_path(u[0]) or "").st_ino for u in sources.resolve(given))

    assert inodes(f"{tmp_path}/{pattern}") == inodes(tmp_path)
    (tmp_path / "sub" / "again").symlink_to("..")  # two ways round: 2**40 paths for glob
    assert inodes(f"{tmp_path}/{pattern}") == inodes(tmp_path)


def test_a_recursive_glob_over_directories_linking_to_each_other_walks_each_once(
    tmp_path: Path,
) -> None:
    """Eight directories each linking to all the others: ``**`` went down every path that
    visits no directory twice (8! of them, 76 s), where the directory given plainly took 2 ms."""
    names = [f"d{n}" for n in range(8)]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text("x\n")
    for name in names:
        for other in names:
            if other != name:
                (tmp_path / name / f"to-{other}").symlink_to(tmp_path / other)
    walked = [directory for directory, _ in sources._below(str(tmp_path))]
    assert len(walked) == 1 + len(names)  # the top, and each directory once
    found = sorted(Path(urls.file_path(u[0]) or "").name for u in sources.resolve(f"{tmp_path}/**"))
    assert found == sorted(f"{name}.txt" for name in names)
    through = sources.resolve(f"{tmp_path}/**/to-d3/*.txt")  # a link's name, after the **
    assert {Path(urls.file_path(u[0]) or "").name for u in through} == {"d3.txt"}


def test_the_same_file_given_twice_is_read_twice(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x\n")
    assert len(sources.resolve([str(tmp_path / "a.txt"), str(tmp_path / "*.txt")])) == 2


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("file://data/crlf.txt", "names the host 'data', which a file:// URL cannot"),
        ("file://crlf.txt", "is a relative file:// URL, which each worker would read from"),
        ("file:///tmp/x#y.txt", "#range=START-END; a # in a file's name is written %23"),
    ],
)
def test_a_file_url_no_worker_reads_as_meant_is_refused_before_anything_runs(
    url: str, words: str
) -> None:
    with pytest.raises(JobError, match=re.escape(words)):
        sources.resolve(url)
    with pytest.raises(JobError, match=re.escape(words)):
        sources.resolve([[url, "file:///tmp/other.txt"]])


def test_a_path_in_a_replica_list_is_taken_as_a_path_alone_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~`` was read as a directory of the worker's, and a Path was refused."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.txt").write_text("x\n")
    url = urls.file_url(str(tmp_path / "x.txt"))
    assert sources.resolve([["~/x.txt", tmp_path / "x.txt"]]) == [[url, url]]
    gone = urls.file_url(str(tmp_path / "gone.txt"))
    assert sources.resolve([["~/gone.txt", "http://host/x"]]) == [[gone, "http://host/x"]]


def test_a_replica_list_fails_over_past_a_path_that_is_not_here_as_past_a_file_url(
    tmp_path: Path,
) -> None:
    """The README says the worker reads the first replica that works: a file:// replica
    that was not there was failed over past, and the same file as a path refused the input."""
    (tmp_path / "good.txt").write_text("x\n")
    good, gone = str(tmp_path / "good.txt"), str(tmp_path / "gone.txt")
    expected = [[urls.file_url(gone), urls.file_url(good)]]
    assert sources.resolve([[gone, good]]) == expected
    assert sources.resolve([[urls.file_url(gone), good]]) == expected
    with pytest.raises(JobError) as info:  # no replica that may work: a typo, surely
        sources.resolve([[gone, str(tmp_path / "other.txt")]])
    message = str(info.value)
    assert message.startswith(f"input ['{gone}', ") and gone in message
    assert "a list of one input's replicas, names no file here: check the paths" in message


def test_a_path_starting_with_a_tilde_that_exists_as_written_is_taken_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path("~/data.txt") read $HOME/data.txt where Python opens ./~/data.txt; an existing
    # file ~nobody "matched no file".
    home = tmp_path / "home"
    home.mkdir()
    (home / "data.txt").write_text("home\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    here = tmp_path / "~"
    here.mkdir()
    (here / "data.txt").write_text("here\n")
    (tmp_path / "~nobody").write_text("nobody\n")
    assert sources.resolve([Path("~/data.txt")]) == [[urls.file_url(str(here / "data.txt"))]]
    assert sources.resolve(["~nobody"]) == [[urls.file_url(str(tmp_path / "~nobody"))]]
    assert sources.resolve([["~nobody"]]) == [[urls.file_url(str(tmp_path / "~nobody"))]]
    here.joinpath("data.txt").unlink()
    here.rmdir()
    assert sources.resolve(["~/data.txt"]) == [[urls.file_url(str(home / "data.txt"))]]


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_raw_input_too_big_for_the_jobs_messages_is_refused_before_anything_runs(
    mode: str,
) -> None:
    """100 MiB ran inline, then failed a local run after it started, on a protocol error
    (a TASK message over what a master takes) and 22 frames of internal traceback."""
    fits = "raw://" + "é" * (sources.RAW_MOST // 2)
    assert sources.resolve([fits]) == [[fits]]
    too_big = "raw://" + "x" * (sources.RAW_MOST + 1)
    with pytest.raises(
        JobError, match=r"holds 16777217 bytes, more than the 16777216 .* to a file"
    ):
        jobs.wordcount.run([too_big], mode=mode)


def test_a_raw_url_that_utf8_cannot_carry_is_refused_before_anything_runs() -> None:
    """A lone surrogate in a raw:// input failed in the task, blamed on the stage."""
    for inputs in ("raw://a\udcff b", ["raw://a\udcff b"], [["raw://x\ud800"]]):
        with pytest.raises(JobError, match=r"holds '\\ud[c8][f0]{2}', which is not text UTF-8"):
            sources.resolve(inputs)
    assert sources.resolve("raw://naïve ☃") == [["raw://naïve ☃"]]


@pytest.mark.parametrize(
    ("url", "held"),
    [("http://host/q3 final.txt", "' '"), ("https://host/café", "'é'"), ("http://h/a\tb", "'\\t'")],
)
def test_an_http_url_no_request_can_carry_is_refused_before_anything_runs(
    url: str, held: str
) -> None:
    # Each attempt failed in the worker as though the host were down, and was retried: on
    # a Disco master 100 times, with pauses of 14 to 60 s.
    with pytest.raises(JobError, match=re.escape(f"holds {held}, which an HTTP request cannot")):
        sources.resolve([url])
    assert sources.resolve(["http://host/q3%20final.txt"]) == [["http://host/q3%20final.txt"]]


def test_a_dict_of_inputs_is_refused_rather_than_read_by_its_keys(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(JobError, match=r"is a dict, whose keys alone .* inputs=list\(d\)"):
        sources.resolve_each({str(tmp_path / "a.txt"): "first"})


@pytest.mark.parametrize("given", [b"data/a.txt", bytearray(b"x"), 5, 2.5])
def test_inputs_that_are_not_a_path_or_a_list_say_what_to_pass(given: object) -> None:
    with pytest.raises(JobError, match=r"inputs=.* is a \w+: pass a path or URL as a str"):
        sources.resolve(given)


@pytest.mark.parametrize("name", ["[ab].txt", "what?.txt", "*.txt", "[x]"])
def test_a_path_that_exists_is_taken_as_it_is_even_when_it_looks_like_a_glob(
    tmp_path: Path, name: str
) -> None:
    (tmp_path / name).write_text("literal\n")
    (tmp_path / "a.txt").write_text("a glob would match me\n")
    [[url]] = sources.resolve(str(tmp_path / name))
    assert Path(str(urls.file_path(url))).read_text() == "literal\n"
    assert sources.resolve(str(tmp_path / "[ab].tx[t]")) == sources.resolve(
        str(tmp_path / "a.txt")
    )  # a pattern naming no file is still a glob


def test_a_big_file_is_cut_into_line_aligned_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MIN_SPLIT", 1000)
    path = tmp_path / "one.txt"
    text = "".join(f"w{i % 50} w{i % 7} extra\n" for i in range(3000))
    path.write_text(text)
    cut = sources.split_large(sources.resolve(path), workers=2)
    assert len(cut) == 2 and all("#range=" in urls[0] for urls in cut)  # a range per core
    assert len(sources.split_large(sources.resolve(path), workers=3)) == 3
    results = jobs.wordcount.run(inputs=path, mode="local", workers=2)
    assert dict(results) == dict(Counter(text.split()))


def test_record_files_and_many_inputs_are_not_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MIN_SPLIT", 10)
    record = tmp_path / "records"
    record.write_bytes(b"\x81" + b"\0" * 5000)
    assert sources.split_large(sources.resolve(record), workers=2) == sources.resolve(record)
    many = [["raw://a"]] * 4
    assert sources.split_large(many, workers=2) == many


def test_compressed_files_are_not_cut_whatever_their_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "MIN_SPLIT", 10)
    text = "".join(f"w{i % 50} w{i % 7}\n" for i in range(3000)).encode()
    for name, data in (("g1_txt_gz$5f1", gzip.compress(text)), ("b_bz2", bz2.compress(text))):
        path = tmp_path / name
        path.write_bytes(data + os.urandom(5000))  # big enough to be cut, were it text
        assert sources.split_large(sources.resolve(path), workers=2) == sources.resolve(path)


@pytest.mark.parametrize("given", ["foo://bar/baz", ["http://a/x", "ftp://b/x"], "s3://bucket/key"])
def test_an_unknown_url_scheme_is_refused_before_anything_runs(given: object) -> None:
    with pytest.raises(JobError) as info:
        sources.resolve([given])
    message = str(info.value)
    assert "URL scheme" in message and "raw://" in message and "tag://" in message


def test_every_scheme_a_worker_reads_is_taken() -> None:
    given = [
        "raw://x",
        "http://h/x",
        "HTTPS://h/x",
        "file:///tmp/x",
        "disco://h/disco/x",
        "dir://h/disco/x",
        "tag://data:x",
    ]
    # Each with its scheme as a worker reads it, whatever its case (DISCO:// went unread
    # by the client's disco:// handling, its port and proxy, and was read at 8989).
    assert sources.resolve(given) == [[url.replace("HTTPS", "https")] for url in given]


@pytest.mark.usefixtures("removed_cwd")
def test_a_relative_input_in_a_removed_working_directory_is_named() -> None:
    # A bare FileNotFoundError came from building this message.
    for inputs in (["data.txt"], [["data.txt"]]):
        with pytest.raises(JobError, match=r"cwd: removed: a relative path names nothing"):
            sources.resolve(inputs)


def test_a_path_that_looks_like_a_url_of_no_scheme_is_taken_as_the_path_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "backup:").mkdir()
    (tmp_path / "backup:" / "day1.txt").write_text("x\n")
    url = urls.file_url(str(tmp_path / "backup:" / "day1.txt"))
    assert sources.resolve(["backup://day1.txt"]) == [[url]]
    with pytest.raises(JobError, match="has the URL scheme 'backup'"):
        sources.resolve(["backup://day2.txt"])


def test_a_cluster_runs_results_are_given_as_listed_to_a_run_on_their_own_master_only() -> None:
    # A job on master B given master A's results got A's disco:// URLs, which B's nodes
    # read at their own port: files of A's nodes they do not serve.
    class Listed:
        mode, master = "cluster", "http://a:8989"

        def record_urls(self, listed: object = None) -> list[list[str]]:
            return [["http://node-a:8989/disco/f"]]

        def listed_urls(self, listed: object = None) -> list[list[str]]:
            return [["disco://node-a/disco/f"]]

    given = Listed()
    assert sources.resolve_each([given], listed_from="http://a:8989") == [
        (given, [["disco://node-a/disco/f"]])
    ]
    for other in ("http://b:8989", None):
        assert sources.resolve_each([given], listed_from=other) == [
            (given, [["http://node-a:8989/disco/f"]])
        ]


def _locked(monkeypatch: pytest.MonkeyPatch, locked: Path) -> None:
    """``locked`` as a directory this user may neither list nor search (the tests may run
    as root, whom the permissions do not stop): what is in it cannot be stat'ed either."""
    scandir, listdir, stat = os.scandir, os.listdir, os.stat

    def refused(path: Any, itself: bool) -> None:
        here = Path(os.fsdecode(path))
        if locked in here.parents or (itself and here == locked):
            raise PermissionError(13, "Permission denied", str(here))

    def checked_scandir(path: Any = ".") -> Any:
        refused(path, itself=True)
        return scandir(path)

    def checked_listdir(path: Any = ".") -> Any:
        refused(path, itself=True)
        return listdir(path)

    def checked_stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(path, (str, bytes, os.PathLike)):
            refused(path, itself=False)
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", checked_scandir)
    monkeypatch.setattr(os, "listdir", checked_listdir)
    monkeypatch.setattr(os, "stat", checked_stat)


def test_an_unreadable_directory_among_the_inputs_is_named_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its files were left out without a word; named itself, or a file in it, it was "a
    # directory holding no files" or "matches no file" (probe CV F5).
    (tmp_path / "open").mkdir()
    (tmp_path / "open" / "a.txt").write_text("a\n")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.txt").write_text("b\n")
    _locked(monkeypatch, tmp_path / "locked")
    for given in (tmp_path, f"{tmp_path}/**", tmp_path / "locked"):
        with pytest.raises(
            JobError, match=r"cannot list .*locked' \(or reach.*: Permission denied: make it"
        ):
            sources.resolve(given)
    for given in (tmp_path / "locked" / "b.txt", f"{tmp_path}/locked/*.txt"):
        with pytest.raises(JobError, match=r"locked.*: Permission denied: make it"):
            sources.resolve(str(given))


def test_a_glob_refuses_what_it_matches_that_is_no_file_as_a_directory_does(
    tmp_path: Path,
) -> None:
    # A pipe and a dangling link a glob matched were left out without a word; a dangling
    # link named itself "matched no file" (probe CV F10).
    (tmp_path / "a.txt").write_text("a\n")
    os.mkfifo(tmp_path / "b.txt")
    with pytest.raises(JobError, match=r"b.txt' is not a regular file"):
        sources.resolve(str(tmp_path / "*.txt"))
    os.unlink(tmp_path / "b.txt")
    (tmp_path / "c.txt").symlink_to(tmp_path / "gone")
    for given in (str(tmp_path / "*.txt"), str(tmp_path / "c.txt")):
        with pytest.raises(JobError, match=r"c.txt' is a link to nothing"):
            sources.resolve(given)


@pytest.mark.parametrize("given", ["data/t.txt\0", Path("a\0b"), ["x.txt\0", "y.txt"]])
def test_an_input_holding_a_nul_is_named(given: Any) -> None:
    # os.stat raised a bare "embedded null byte" from inside discodsl (probe CV F6).
    with pytest.raises(JobError, match=r"holds a NUL character, which no path or URL can: split"):
        sources.resolve([given])


@pytest.mark.parametrize("url", ["http://", "https:///path", "http://[::1", "http://:80/x"])
def test_an_http_input_of_no_host_is_refused_before_the_run(url: str) -> None:
    # Each task retried it as a network failure, "check that the host is up" (probe CV F7).
    with pytest.raises(JobError, match=r"names no host.*: write it as https?://HOST\[:PORT\]/PATH"):
        sources.resolve([url])


@pytest.mark.parametrize("given", ["raw://a\0b", "RAW://a\0b", ["raw://a\0b", "raw://c"]])
def test_raw_data_may_hold_a_nul(given: Any) -> None:
    # Refused as a path would be (probe CW F6, a regression).
    assert sources.resolve([given])


def test_a_path_through_a_file_or_a_loop_of_links_is_no_unreadable_directory(
    tmp_path: Path,
) -> None:
    # Both were "cannot list the input directory ...: make it readable" (probe CW F20, a
    # regression).
    (tmp_path / "plain.txt").write_text("a\n")
    with pytest.raises(JobError, match=r"matches no file"):
        sources.resolve([str(tmp_path / "plain.txt" / "part1")])
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    with pytest.raises(JobError, match=r"is a link to nothing"):
        sources.resolve([str(tmp_path / "loop.txt")])


def test_a_file_url_naming_a_nul_is_refused_in_words() -> None:
    # A bare "ValueError: embedded null byte" from inside discodsl (probe CW F17).
    with pytest.raises(JobError, match=r"names a path holding a NUL character \(%00\)"):
        sources.resolve(["file:///tmp/a%00b"])


@pytest.mark.parametrize("url", ["http://h:99999/x", "http://h:-1/x", "https://h:port/x"])
def test_an_http_input_of_no_port_is_refused_before_the_run(url: str) -> None:
    # Each task retried it as a network failure (probe CW F18).
    with pytest.raises(JobError, match=r"names no port a server can listen on"):
        sources.resolve([url])
