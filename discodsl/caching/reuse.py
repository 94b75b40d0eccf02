"""What a run with ``cache=True`` reuses, and what it keeps for the next one.

:func:`look_up` finds, for a run's stage keys (:mod:`discodsl.caching.keys`),
the last stage an earlier identical run finished whose outputs are still
there (the runner says what "there" means: kept files for inline and local
runs, the job's stage results on a master). All stages: the earlier run's
results serve this one (:attr:`Checkpoint.complete`). Some: the run resumes
after them, its first stage reading their outputs with their labels, so a
reduce groups them as it would have. None: a fresh run. :class:`Keeper`
keeps each stage of a run as it finishes, in :mod:`discodsl.caching.store`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from discodsl.caching import store
from discodsl.caching.store import Entry, Output
from discodsl.errors import JobError
from discodsl.stdio import notice

__all__ = ["Checkpoint", "Keeper", "look_up"]

# What a runner makes of an entry: its outputs as they can be read now, or None when
# they are gone (the files, or the job on the master).
Reusable = Callable[[Entry], "list[Output] | None"]


@dataclass(frozen=True)
class Checkpoint:
    """Where a cached run starts: ``start`` is the first stage to run (all of them done:
    ``complete``), ``inputs`` the labelled outputs of the stage before it (``entry``'s),
    ``skipped`` the names of the stages it does not run. ``earlier`` finds the kept
    outputs of one of those, when ``results.stage`` asks (None if they are gone).
    ``held`` keeps the files of ``entry`` and of the earlier stages' entries for the run
    while the checkpoint lives: evicting or clearing them takes nothing from it (see
    :func:`store.hold`)."""

    start: int
    stages: int
    inputs: list[Output]
    entry: Entry
    skipped: tuple[str, ...]
    earlier: Callable[[str], list[Output] | None] = lambda stage: None
    held: tuple[store.Held, ...] = ()

    def release(self) -> None:
        """Let go of the files held for the run (its results are closed)."""
        for held in self.held:
            held.release()

    @property
    def complete(self) -> bool:
        return self.start == self.stages

    @property
    def counters(self) -> dict[str, int]:
        """The counters of the stages reused (they add up as the run goes)."""
        return dict(self.entry.counters)

    def stage_urls(self, stage: str) -> list[list[str]] | None:
        """A skipped stage's kept outputs as replica lists (``results.stage``); None for a
        stage the run runs; JobError for one whose kept outputs are gone."""
        if stage not in self.skipped:
            return None
        outputs = self.inputs if stage == self.entry.stage else self.earlier(stage)
        if outputs is None:
            raise JobError(
                f"the outputs of stage {stage!r}, reused from the cache, are gone since: "
                "evicted or cleared from the cache, or, on a cluster, the job that made them "
                "purged; run the job with cache=False to make them again"
            )
        return [urls for _, _, urls in outputs]

    def notice(self, job: str) -> str:
        """The line that tells the user what was reused, and from which run."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.entry.created))
        if self.complete:
            return (
                f"discodsl: cached results of job {job!r} from run {self.entry.run} ({when}); "
                "cache=False (--no-cache on the command line) runs it again"
            )
        names = ", ".join(self.skipped)
        return (
            f"discodsl: resuming job {job!r} after stage {self.entry.stage!r}: the outputs of "
            f"{names} are reused from run {self.entry.run} ({when})"
        )


def look_up(keys: Sequence[str], names: Sequence[str], reusable: Reusable) -> Checkpoint | None:
    """The checkpoint of the last stage whose kept outputs can be reused, or None."""
    for index in reversed(range(len(keys))):
        entry = store.load_intact(keys[index])
        if entry is None or entry.index != index or entry.stage != names[index]:
            continue
        outputs = reusable(entry)
        if outputs is None or (held := store.hold(entry)) is None:
            continue
        if held.entry is not entry:  # its files, linked for this run: read those
            outputs = reusable(held.entry) or outputs
        store.touch(entry)
        kept = _hold_earlier(dict(zip(names[:index], keys[:index], strict=True)))
        earlier = functools.partial(_kept, kept, reusable)
        skipped = tuple(names[: index + 1])
        holding = (held, *kept.values())
        return Checkpoint(index + 1, len(keys), outputs, entry, skipped, earlier, holding)
    return None


def _hold_earlier(keys: Mapping[str, str]) -> dict[str, store.Held]:
    """The entries of the stages before a checkpoint (``keys``: stage name to key) held
    for the run now, each a link per file (no file is read: see _kept); those gone are
    not there."""
    held = {}
    for stage, key in keys.items():
        entry = store.load(key)
        found = store.hold(entry) if entry is not None else None
        if found is not None:
            held[stage] = found
    return held


def _kept(held: Mapping[str, store.Held], reusable: Reusable, stage: str) -> list[Output] | None:
    """The kept outputs of the skipped ``stage`` (its files checked only when asked)."""
    found = held.get(stage)
    if found is None or not store.intact(found.entry):
        return None
    return reusable(found.entry)


class Keeper:
    """Keeps a run's stages as they finish, each under its key (``cache=True``)."""

    def __init__(
        self,
        job: str,
        names: Sequence[str],
        keys: Sequence[str],
        where: str,
        started: float,
        run: str = "",
    ):
        self.job, self.where = job, where
        self.keys = dict(zip(names, keys, strict=True))
        self.index = {name: number for number, name in enumerate(names)}
        self.run = run or job  # the run's name (a master's, once it gives it)
        self.told: set[str] = set()  # why stages were not kept, each said once
        # When the run looked for entries to reuse: one another run kept since then stays
        # (a run beside it may be reading its files); one it saw and could not reuse goes.
        self.started = started
        self.kept: set[str] = set()  # keys this run kept (again: its own entry is replaced)

    def keep(
        self,
        stage: str,
        outputs: Sequence[Output],
        paths: Sequence[Sequence[str | None]],
        counters: Mapping[str, int],
    ) -> None:
        """Keep stage ``stage``'s ``outputs``, copying the local files ``paths`` name;
        ``counters``: the run's, up to and with this stage."""
        entry = Entry(
            key=self.keys[stage],
            job=self.job,
            run=self.run,
            stage=stage,
            index=self.index[stage],
            stages=len(self.keys),
            where=self.where,
            outputs=[(label, size, list(urls)) for label, size, urls in outputs],
            counters=dict(counters),
        )
        try:
            again = entry.key in self.kept
            store.keep(entry, paths, started=None if again else self.started)
            self.kept.add(entry.key)
        except store.NotKept as why:
            told = str(why) if why.everywhere else f"{stage}: {why}"  # an unwritable cache once
            if told not in self.told:
                notice(
                    f"discodsl: stage {stage!r} of job {self.job!r} is not kept in the cache: {why}"
                )
                self.told.add(told)
