"""The commands on stored data: DDFS (``ddfs ls``, ``push``, ``cat``, ``blobs``, ``xcat``,
``rm``) and the local cache of results (``cache ls``, ``cache clear``).
"""

from __future__ import annotations

import argparse
import sys
import time

from discodsl import recordtext, stdio
from discodsl.caching import store
from discodsl.cli.common import cluster_for, print_rows, tell


def cmd_ddfs_ls(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        tags = conn.ddfs.list_tags(args.prefix)
    print_rows(args, tags, tags)
    return 0


def cmd_ddfs_push(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        blobs = conn.ddfs.push(args.tag, args.files)
    print_rows(args, blobs, (replicas[0] for replicas in blobs))
    return 0


def cmd_ddfs_cat(args: argparse.Namespace) -> int:
    from discodsl.ddfs import check_name, resolve_inputs

    target: str = args.target
    with cluster_for(args) as conn:
        tag_or_url = target if "://" in target else f"tag://{check_name(target)}"
        urls = [replicas[0] for replicas in resolve_inputs([tag_or_url], conn.ddfs)]
        sys.stdout.flush()
        binary = getattr(sys.stdout, "buffer", None)  # None in a notebook or a redirect
        for url in urls:
            for chunk in conn.ddfs.cat(url):
                with stdio.writing_stdout():  # the writes only: reading is the node's error
                    if binary is not None:
                        binary.write(chunk)
                    else:
                        sys.stdout.write(chunk.decode(errors="replace"))
        with stdio.writing_stdout():
            (binary or sys.stdout).flush()
    return 0


def cmd_ddfs_blobs(args: argparse.Namespace) -> int:
    from discodsl.ddfs import check_name

    with cluster_for(args) as conn:
        blobs = conn.ddfs.blobs(check_name(args.tag.removeprefix("tag://")))
    print_rows(args, blobs, (" ".join(replicas) for replicas in blobs))
    return 0


def cmd_ddfs_xcat(args: argparse.Namespace) -> int:
    from discodsl.cli.common import check_output, json_wanted
    from discodsl.runners.cluster import results_in

    check_output(args.output)
    with cluster_for(args) as conn:
        results = results_in(conn, args.target)
    with stdio.output(args.output) as out:
        recordtext.write_records(results, out, as_json=json_wanted(args))
    return 0


def cmd_ddfs_rm(args: argparse.Namespace) -> int:
    with cluster_for(args) as conn:
        conn.ddfs.delete(args.tag, missing_ok=False)
    tell(args, f"deleted {args.tag}", {"deleted": args.tag})
    return 0


def cmd_cache_ls(args: argparse.Namespace) -> int:
    store.check_readable()
    kept = [entry for entry in store.entries() if args.job in (None, entry.job)]
    rows = [
        {
            "key": entry.key,
            "job": entry.job,
            "stage": entry.stage,
            "run": entry.run,
            "where": entry.where,
            "size": entry.size,
            "used": entry.used,
        }
        for entry in kept
    ]
    lines = [
        f"{_when(entry.used)}  {entry.key[:12]}  {_size(entry.size):>8}  {entry.where:<7}  "
        f"{entry.job}: stage {entry.index + 1}/{entry.stages} {entry.stage} of run {entry.run}"
        + ("" if entry.where in ("local", "inline") else " (if finished on that master)")
        for entry in kept
    ]
    total = f"{len(kept)} stage(s), {_size(sum(entry.size for entry in kept))}"
    limit = _size(store.limit())
    print_rows(args, rows, [*lines, f"{total} in {store.cache_dir()}, limit {limit}"])
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    store.check_readable()
    try:
        removed = store.clear(args.job)
    except store.NotCleared as exc:  # what went is said, then the error (exit status 1)
        _tell_removed(args, exc.removed)
        raise
    _tell_removed(args, removed, none_kept=not removed)
    return 0


def _tell_removed(
    args: argparse.Namespace, removed: list[store.Entry], none_kept: bool = False
) -> None:
    total = sum(entry.size for entry in removed)
    note = ""
    if args.job is not None and none_kept:
        note = f": no stage of job {args.job!r} is kept (see `discodsl cache ls`)"
    text = f"removed {len(removed)} stage(s), {_size(total)}, from {store.cache_dir()}{note}"
    data = {"removed": len(removed), "bytes": total, "cache": str(store.cache_dir())}
    tell(args, text, data)


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _size(size: int) -> str:
    value, unit = float(size), "B"
    for bigger in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
