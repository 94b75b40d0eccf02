"""Word count with dask.bag: ``read_text`` -> ``str.split`` -> ``flatten`` -> ``frequencies``.

usage: python bench/peers/dask_wc.py FILE [FILE ...] [--scheduler processes|default]
                                     [--workers 2] [-o OUT]
``processes`` (the default here) runs dask's multiprocessing scheduler with
``--workers`` processes; ``default`` leaves the choice to dask, which for a
bag is the same multiprocessing scheduler with one process per core. Needs
``pip install -e '.[bench]'``. Prints (or writes) word<TAB>count for every
distinct word, in any order.
"""

from __future__ import annotations

from collections.abc import Iterable

from _output import arguments, write_counts


def frequencies(paths: list[str], scheduler: str, workers: int) -> Iterable[tuple[str, int]]:
    """The word counts of the files, computed by dask."""
    import dask.bag

    bag = dask.bag.read_text(paths).str.split().flatten().frequencies()
    if scheduler == "default":
        return bag.compute()  # type: ignore[no-any-return]
    return bag.compute(scheduler="processes", num_workers=workers)  # type: ignore[no-any-return]


def main() -> None:
    parser = arguments(__doc__.split("\n", 1)[0])
    parser.add_argument("--scheduler", choices=["processes", "default"], default="processes")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    args = parser.parse_args()
    write_counts(frequencies(args.files, args.scheduler, args.workers), args.out)


if __name__ == "__main__":
    main()
