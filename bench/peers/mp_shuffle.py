"""Word count in Disco's dataflow, by hand: mp_pairs plus the shuffle a Disco job must do.

usage: python bench/peers/mp_shuffle.py FILE [FILE ...] [-p PROCESSES] [--partitions N]
                                    [--calls] [-o OUT]
Two rounds of ``multiprocessing.Pool`` tasks, as a Disco job with a map and
a reduce runs: one map task per input file, then one reduce task per
partition, each round after the other, and each task in a process of its
own, forked for it (``maxtasksperchild=1``), as Disco starts a worker per
task. A map task folds its pairs into a dict exactly as mp_pairs does, then
writes the dict's items to one record file per partition that has any
(Disco's format: hunks of 1 MiB of concatenated pickles, each behind a
14-byte header with its CRC-32, and a closing empty hunk; the partition a
CRC-32 of the word), each written as ``NAME.partial`` and renamed, as
Disco's writer does. The parent writes each map task's index (a line per
file: partition, path, size), as a Disco master does. A reduce task reads
every index, then its partition's files, folds the records into a dict,
and writes its totals, in key order, to one more record file; the parent
reads those. No framework: no check on a record, records pickled without a
memo (the peer knows they are flat), and no user function called per key:
the counts are added with ``+``. So this is the floor for the job on Disco's
dataflow, where mp_pairs has none of its files and processes; with one-line
inputs, the floor of a task's cost (bench/tasks.py).

With ``--calls``, the reduce is the job's own (``total``: ``yield word,
sum(counts)``), called as a ``@reduce(combine=True)`` job must call it: in
each map task on every key counted more than once (``repeat(1, n)``), in each
reduce task on every key's values, listed in the order read. That is the
user code the job runs that ``+`` does not, at its least: the floor for the
job as declared.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import chain, repeat
from multiprocessing import Pool

from _output import arguments, write_counts
from mp_pairs import count_file

# A file a map task wrote: its partition, path and size.
Output = tuple[int, str, int]

HEADER = struct.Struct("<BBIQ")  # 0x81, compressed flag, CRC-32 of the hunk, its length
HUNK = 1 << 20


def write_records(path: str, records: Iterable[tuple[str, int]]) -> int:
    """``records`` as a Disco record file, uncompressed, each one pickle of protocol 3,
    written as ``path.partial`` and renamed; the file's size."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=3)
    pickler.fast = True  # no memo: the records hold no object twice
    dump, tell = pickler.dump, buffer.tell
    with open(path + ".partial", "wb") as handle:
        for record in records:
            dump(record)
            if tell() > HUNK:
                write_hunk(handle, buffer)
        write_hunk(handle, buffer)
        write_hunk(handle, buffer)  # the closing hunk, empty
        size = handle.tell()
    os.replace(path + ".partial", path)
    return size


def write_hunk(handle: io.BufferedWriter, buffer: io.BytesIO) -> None:
    payload = buffer.getvalue()
    handle.write(HEADER.pack(0x81, 0, zlib.crc32(payload), len(payload)))
    handle.write(payload)
    buffer.seek(0)
    buffer.truncate()


def read_records(path: str) -> Iterator[tuple[str, int]]:
    """Every record of a record file written by write_records, each hunk's CRC checked."""
    with open(path, "rb") as handle:
        data = handle.read()
    start = 0
    while start < len(data):
        _, _, crc, length = HEADER.unpack_from(data, start)
        payload = data[start + HEADER.size : start + HEADER.size + length]
        if zlib.crc32(payload) != crc:
            raise ValueError(f"{path}: bad CRC at byte {start}")
        start += HEADER.size + length
        stream = io.BytesIO(payload)
        load = pickle.Unpickler(stream).load
        while stream.tell() < length:
            yield load()


def total(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
    """The job's reduce, as examples/wordcount.py declares it."""
    yield word, sum(counts)


def combined(totals: dict[str, int]) -> Iterable[tuple[str, int]]:
    """A map task's counts through ``total``, as a combiner: a key counted once as it is."""
    return chain.from_iterable(
        total(word, repeat(1, n)) if n > 1 else ((word, n),) for word, n in totals.items()
    )


def map_task(
    task: tuple[int, str], directory: str, partitions: int, calls: bool = False
) -> list[Output]:
    """Count one file as mp_pairs does; write the counts (through ``total`` with ``calls``)
    to a file per partition that has any; the files written (partition, path, size)."""
    number, path = task
    totals = count_file(path)
    buckets: list[list[tuple[str, int]]] = [[] for _ in range(partitions)]
    for pair in combined(totals) if calls else totals.items():
        buckets[zlib.crc32(pair[0].encode()) % partitions].append(pair)
    outputs = []
    for label, bucket in enumerate(buckets):
        if bucket:
            out = os.path.join(directory, f"map-{number}-{label}")
            outputs.append((label, out, write_records(out, bucket)))
    return outputs


def write_index(path: str, outputs: list[Output]) -> str:
    """A map task's index, a line per file it wrote, as the master writes it; its path."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{label} {out} {size}\n" for label, out, size in outputs)
    return path


def reduce_task(label: int, directory: str, indexes: list[str], calls: bool = False) -> str:
    """Fold one partition's records from every map task (found in its index), by ``+``, or
    by ``total`` on each key's listed values with ``calls``; write the totals in key order."""
    records = chain.from_iterable(map(read_records, partition_files(label, indexes)))
    out = os.path.join(directory, f"reduce-{label}")
    write_records(out, reduced(records) if calls else sorted(added(records).items()))
    return out


def partition_files(label: int, indexes: list[str]) -> Iterator[str]:
    """The files of partition ``label`` listed in the map tasks' indexes."""
    for index in indexes:
        with open(index, encoding="utf-8") as handle:
            lines = [line.split() for line in handle]
        yield from (path for part, path, _ in lines if int(part) == label)


def added(records: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Each key's values added up."""
    totals: dict[str, int] = {}
    get = totals.get
    for key, value in records:
        totals[key] = get(key, 0) + value
    return totals


def reduced(records: Iterable[tuple[str, int]]) -> Iterator[tuple[str, int]]:
    """Each key's values listed in the order read, then ``total`` on them, in key order."""
    groups: dict[str, list[int]] = {}
    for key, value in records:
        try:
            groups[key].append(value)
        except KeyError:
            groups[key] = [value]
    return chain.from_iterable(total(key, iter(groups[key])) for key in sorted(groups))


def count_files(
    paths: list[str], processes: int, partitions: int, calls: bool = False
) -> Iterator[tuple[str, int]]:
    """The map round, then the reduce round, in one pool of a process per task; the map
    tasks' indexes written and the reduce outputs read here."""
    with tempfile.TemporaryDirectory() as directory, Pool(processes, maxtasksperchild=1) as pool:
        work = partial(map_task, directory=directory, partitions=partitions, calls=calls)
        indexes = [
            write_index(os.path.join(directory, f"map-{number}.results"), outputs)
            for number, outputs in enumerate(pool.imap(work, enumerate(paths), chunksize=1))
        ]
        reduce = partial(reduce_task, directory=directory, indexes=indexes, calls=calls)
        for out in pool.imap(reduce, range(partitions), chunksize=1):
            yield from read_records(out)


def main() -> None:
    parser = arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("-p", "--processes", type=int, default=2, help="pool size (default 2)")
    parser.add_argument("--partitions", type=int, default=4, help="reduce tasks (default 4)")
    parser.add_argument("--calls", action="store_true", help="call the job's reduce per key")
    args = parser.parse_args()
    pairs = count_files(args.files, args.processes, args.partitions, args.calls)
    write_counts(pairs, args.out)


if __name__ == "__main__":
    main()
