"""discodsl: MapReduce and pipeline jobs for Disco 0.5.4 as decorated Python functions.

::

    from discodsl import job, map, reduce

    @map
    def words(line):
        for word in line.split():
            yield word, 1

    @reduce(combine=True)
    def total(word, counts):
        yield word, sum(counts)

    @job(partitions=4)
    def wordcount():
        return [words, total]

    for word, n in wordcount.run(inputs=["data/*.txt"]):
        print(word, n)
"""

from discodsl import readers
from discodsl.decorators import UnstableHashWarning, job, map, reduce, stage
from discodsl.errors import (
    ClientError,
    DataError,
    DiscoDSLError,
    InputRunFailed,
    JobActive,
    JobDead,
    JobError,
    JobpackError,
    MalformedRecord,
    PicklingError,
    ProtocolError,
    Retry,
    SettingsError,
    StageError,
    TaskFailed,
)
from discodsl.model import Job, RedefinedStageWarning, Stage
from discodsl.options import JobOptions
from discodsl.results import Results
from discodsl.runners.handle import Run
from discodsl.worker.counters import count, status
from discodsl.worker.current import ThisTask, this_task

__version__ = "0.1.0"

__all__ = [
    "ClientError",
    "DataError",
    "DiscoDSLError",
    "InputRunFailed",
    "Job",
    "JobActive",
    "JobDead",
    "JobError",
    "JobOptions",
    "JobpackError",
    "MalformedRecord",
    "PicklingError",
    "ProtocolError",
    "RedefinedStageWarning",
    "Results",
    "Retry",
    "Run",
    "SettingsError",
    "Stage",
    "StageError",
    "TaskFailed",
    "ThisTask",
    "UnstableHashWarning",
    "count",
    "job",
    "map",
    "readers",
    "reduce",
    "stage",
    "status",
    "this_task",
]
