"""Decorators build frozen, callable stages and jobs; misuse fails at decoration time."""

from __future__ import annotations

import builtins
import dataclasses
import functools
import importlib
import inspect
import os
import re
import subprocess
import sys
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discodsl import (
    Job,
    JobError,
    RedefinedStageWarning,
    SettingsError,
    Stage,
    UnstableHashWarning,
    job,
    map,
    reduce,
    stage,
)
from discodsl.model import second_stage
from discodsl.options import option_names
from discodsl.worker.partition import default_partition
from discodsl.worker.spec import StageSpec, params_passing, positional_arity, takes_params


@map
def words(line: str) -> Iterator[tuple[str, int]]:
    for word in line.split():
        yield word, 1


@reduce
def total(word: str, counts: Any) -> Iterator[tuple[str, int]]:
    yield word, sum(counts)


def test_stage_stays_callable_as_the_plain_function() -> None:
    assert list(words("a b a")) == [("a", 1), ("b", 1), ("a", 1)]
    assert list(total("a", iter([1, 2]))) == [("a", 3)]
    assert words.name == "words" and words.kind == "map" and words.grouping == "split"
    assert total.grouping == "group_label"


def test_a_stage_or_job_named_as_a_decorator_says_so_when_used_as_one() -> None:
    """Disco's examples name their functions map and reduce: the next @map, @reduce(...)
    or @job then called the stage or job, which made a generator of the next function
    ("decorate it with @map" at the job), or raised a bare TypeError (probe DG F2)."""
    namespace: dict[str, Any] = {}
    exec(  # a module of the user's, as written
        "from discodsl import job, map, reduce\n"
        "@map\ndef map(line):\n    yield line, 1\n"
        "@reduce\ndef reduce(key, values):\n    yield key, sum(values)\n"
        "@job\ndef job():\n    return [map, reduce]\n",
        namespace,
    )
    for name, call in (
        ("map", lambda: namespace["map"](total.function)),
        ("reduce", lambda: namespace["reduce"](combine=True)),
        ("job", lambda: namespace["job"](partitions=2)),
        ("job", lambda: namespace["job"](total.function)),
    ):
        with pytest.raises(TypeError) as caught:
            call()
        assert str(caught.value).startswith(f"@{name} here is the "), caught.value
        assert f"from discodsl import {name} as {name}_" in str(caught.value)
    # As plain functions they are called as ever, by keywords too (probe DJ F4).
    assert list(namespace["map"]("a")) == [("a", 1)]
    assert list(namespace["map"](line="a")) == [("a", 1)]
    assert list(namespace["reduce"]("a", [1, 2])) == [("a", 3)]
    assert list(namespace["reduce"](key="a", values=[1, 2])) == [("a", 3)]
    assert namespace["job"]() == [namespace["map"], namespace["reduce"]]


def test_a_stage_ships_as_its_function_and_pickles_and_copies_as_itself() -> None:
    import copy
    import pickle

    import cloudpickle

    from discodsl import shipping

    with shipping.by_value({__name__}):
        shipped = cloudpickle.loads(shipping._dumps(words))  # as a jobpack holds it
    assert not isinstance(shipped, Stage) and list(shipped("a b")) == [("a", 1), ("b", 1)]
    # pickled by a user (multiprocessing, a cache): by name, where its module holds it, as
    # the function would be undecorated; else as itself (a raw AttributeError came later)
    assert pickle.loads(pickle.dumps(words)) is words
    assert cloudpickle.loads(cloudpickle.dumps(words)) is words
    made = map(lambda line: [(line, 1)], name="made")
    again = cloudpickle.loads(cloudpickle.dumps(made))
    assert isinstance(again, Stage) and again.name == "made" and again("x") == [("x", 1)]
    assert copy.copy(words) is words and copy.deepcopy([words])[0] is words


def test_a_stage_is_named_as_its_function() -> None:
    assert (words.__name__, words.__qualname__, words.__module__) == ("words", "words", __name__)
    assert words.__doc__ is None and words.__wrapped__ is words.function


def test_a_job_pickles_by_name_or_as_its_stages_and_options() -> None:
    import pickle

    import cloudpickle

    assert pickle.loads(pickle.dumps(_counting)) is _counting
    copy = _counting.with_options(partitions=3)
    again = pickle.loads(pickle.dumps(copy))
    assert again == copy and again.stages == (words, total) and again.options.partitions == 3
    assert repr(cloudpickle.loads(cloudpickle.dumps(copy))) == repr(copy)
    assert {copy: 1}[again] == 1  # hashable, as its equality says


def test_a_copy_of_a_job_is_named_as_the_job() -> None:
    """A job pickled by value (a with_options() copy) had no __name__ and discodsl.model for
    its __module__."""
    import copy
    import pickle

    wider = _counting.with_options(partitions=3)
    for again in (copy.copy(wider), copy.deepcopy(wider), pickle.loads(pickle.dumps(wider))):
        assert again == wider
        names = (again.__name__, again.__qualname__, again.__module__)
        assert names == ("_counting", "_counting", __name__)


def test_a_job_is_introspected_as_its_body() -> None:
    """help(job), job.__doc__ and inspect.getsource(job) gave the Job class's, or failed."""

    @job
    def documented() -> list[Any]:
        """Count the words of the inputs."""
        return [words]

    assert documented.__doc__ == "Count the words of the inputs."
    assert "def documented() -> list[Any]:" in inspect.getsource(documented)
    assert inspect.getdoc(Job) is not None and inspect.getdoc(Stage) is not None
    assert "One stage of a pipeline" in (Stage.__doc__ or "")
    assert words.__doc__ is None  # as its function's: it has none


def test_a_misspelt_attribute_of_a_stage_names_the_stage_and_the_closest() -> None:
    """It named StageSpec, which the user never made."""
    with pytest.raises(AttributeError, match=r"^'Stage' object has no attribute 'nmae'$") as caught:
        words.nmae  # noqa: B018
    assert caught.value.name == "nmae" and caught.value.obj is words  # for "Did you mean"


def test_a_job_built_by_hand_is_checked_as_a_declared_one() -> None:
    """Job(...) skipped every check: an empty job failed at run() on an IndexError, and two
    stages of one name ran inline but not locally."""
    with pytest.raises(JobError, match=r"must return a non-empty list of stages"):
        Job("empty", ())
    with pytest.raises(JobError, match=r"'words'"):
        Job("twice", (words, words))
    assert Job("by_hand", (words, total)).stages == (words, total)


def test_a_jobs_html_escapes_its_names() -> None:
    """A job of a lambda, ``<lambda>``, vanished from a notebook cell as an unknown tag."""
    shown = job(lambda: [words])._repr_html_()
    assert "<code>&lt;lambda&gt;</code>" in shown and "<lambda>" not in shown
    assert "<code>a&lt;b&gt;</code>" in Job("j", (map(name="a<b>")(len),))._repr_html_()


@pytest.mark.parametrize("decorator", [map, reduce, stage])
def test_a_job_decorated_as_a_stage_is_refused_when_declared(decorator: Any) -> None:
    """It was declared, then failed at run(), each runner its own way."""
    with pytest.raises(JobError, match=r"'_counting' is a job, not a function: a stage cannot"):
        decorator(_counting)


@pytest.mark.parametrize("decorator", [map, reduce, stage, map(name="again")])
def test_a_stage_decorated_again_is_refused_with_the_fix(decorator: Any) -> None:
    with pytest.raises(JobError, match=r"'words' is already a map stage: decorate its plain"):
        decorator(words)


@pytest.mark.parametrize(
    "partitioner", [lambda key: 0, lambda key, n, extra: 0, lambda *, key, n: 0]
)
def test_a_partitioner_that_cannot_take_key_and_n_is_refused_when_declared(
    partitioner: Any,
) -> None:
    with pytest.raises(JobError, match=r"called as partitioner\(key, n\).*def by_first_letter"):
        reduce(partitioner=partitioner)(total.function)


@pytest.mark.parametrize("partitioner", [lambda key, n: 0, lambda *args: 0, lambda k, n, x=1: 0])
def test_a_partitioner_taking_key_and_n_is_accepted(partitioner: Any) -> None:
    assert reduce(partitioner=partitioner)(total.function).partitioner is partitioner


def _disco_map_init(input_iter: Any, params: Any) -> None:
    """Disco's classic map_init(input_iter, params)."""


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"init": _disco_map_init}, "its init hook is called as init(params)"),
        ({"init": lambda a, b, c: None}, "its init hook is called as init(params)"),
        ({"done": lambda state, params, extra: None}, "done(state, params), with as many"),
        ({"init": lambda *, flag: None}, "argument: 'flag'"),  # inspect's words vary by version
    ],
)
def test_a_hook_that_cannot_take_what_it_is_given_is_refused_when_declared(
    options: dict[str, Any], words: str
) -> None:
    with pytest.raises(JobError, match=re.escape(words)):
        map(**options)(words.split)


def _fixture_style(params: Any) -> Any:
    print("set up")
    yield {}
    print("torn down")


async def _async_done(state: Any, params: Any) -> None:
    pass


def _pairs_at_the_end(state: Any, params: Any) -> Any:
    yield "total", 1


def _as_init(fixture: Any) -> Any:
    """A decorator turning a fixture (set up, yield the state) into a plain init."""

    @functools.wraps(fixture)
    def init(params: Any) -> Any:
        return next(fixture(params))

    return init


@pytest.mark.parametrize(
    ("options", "role"), [({"init": _fixture_style}, "init"), ({"done": _async_done}, "done")]
)
def test_a_hook_whose_body_would_never_run_is_refused_when_declared(
    options: dict[str, Any], role: str
) -> None:
    # A fixture-style init (set up, yield, tear down) was taken: its body never ran, and
    # done got a generator as the state (probe DI F14).
    with pytest.raises(JobError, match=f"its {role} hook is a generator or async function"):
        map(**options)(str.split)
    assert map(done=_pairs_at_the_end)(str.split).done is _pairs_at_the_end  # yields pairs
    # A plain function that wraps a generator is called, not the generator (probe DJ F11).
    wrapped = _as_init(_fixture_style)
    assert map(init=wrapped)(str.split).init is wrapped
    # One contextlib.contextmanager made, whose call only makes the manager (probe DL F2).
    import contextlib

    with pytest.raises(JobError, match="its init hook is a generator or async function"):
        map(init=contextlib.contextmanager(_fixture_style))(str.split)
    # A plain function made around an async one, which it runs, is called (probe DL F11).
    import asyncio

    @functools.wraps(_async_done)
    def runs_it(state: Any, params: Any) -> None:
        return asyncio.run(_async_done(state, params))

    assert map(done=runs_it)(str.split).done is runs_it


@pytest.mark.parametrize(
    ("init", "done"),
    [
        (lambda: None, lambda: None),
        (lambda params: None, lambda state: None),
        (lambda params, extra=1: None, lambda state, params: None),
        (lambda *a: None, lambda *a: None),
    ],
)
def test_hooks_taking_what_they_are_given_or_less_are_accepted(init: Any, done: Any) -> None:
    declared = map(init=init, done=done)(str.split)
    assert (declared.init, declared.done) == (init, done)


@job
def _counting() -> list[Any]:
    return [words, total]


@pytest.mark.parametrize(
    ("declare", "words"),
    [
        (lambda: job(nr_reduces=3)(lambda: []), "for Disco's nr_reduces=, write partitions="),
        (lambda: job(combiner=len)(lambda: []), "for Disco's combiner=, write @reduce(combiner"),
        (lambda: job(partition=len)(lambda: []), "Disco's partition=, write @reduce(partitioner"),
        (lambda: reduce(reduce_init=len)(total.function), "write @reduce(init=fn), called as"),
        (lambda: _counting.run(input=["raw://a"], mode="inline"), "write run(inputs=[...])"),
        # Not taken for a misspelling of a discodsl option (profile is close to prefix).
        (lambda: job(profile=True)(lambda: []), "profile=, write nothing: profile a stage"),
        (lambda: job(name="wc")(lambda: []), "Disco's name=, write prefix="),
        (lambda: job(map=len)(lambda: []), "write a @map stage in the list"),
        (lambda: job(scheduler={})(lambda: []), "write max_cores="),
        (lambda: job(ext_params={})(lambda: []), "run an external program from it"),
        (lambda: job(sort_buffer_size="10%")(lambda: []), "write memory_budget="),
        (lambda: job(map_output_stream=())(lambda: []), "outputs are always Disco's record"),
        # no advice, and advice on reading for an output stream (probe DG FR6)
        (lambda: job(save_info="ddfs")(lambda: []), "Disco's save_info=, write save_results="),
        (lambda: job(reduce_output_stream=())(lambda: []), "outputs are always Disco's record"),
        (lambda: job(map_input_stream=())(lambda: []), "@map(reader=...) for how inputs are"),
        (lambda: job(required_files=[])(lambda: []), "gets small data through params="),
    ],
)
def test_disco_classic_option_names_say_what_to_write_instead(declare: Any, words: str) -> None:
    with pytest.raises((JobError, SettingsError), match=re.escape(words)):
        declare()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("inputs", "inputs= is given when the job runs: job.run(inputs=[...])"),
        ("mode", "mode= is given when the job runs: job.run(mode='inline')"),
        ("master", "master= is given when the job runs: job.run(master='http://HOST:8989')"),
    ],
)
def test_a_keyword_of_run_given_to_job_says_where_it_goes(name: str, words: str) -> None:
    """inputs= was taken for a misspelling of push_inputs=, which failed again as told."""
    with pytest.raises(SettingsError, match=re.escape(words)):
        job(**{name: "x"})(lambda: [])


def test_a_bad_value_of_an_option_with_no_fix_of_its_own_says_what_its_type_takes() -> None:
    with pytest.raises(SettingsError, match=r"compress='yes' is invalid \(.*\): use True or False"):
        job(compress="yes")(lambda: [])


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"A=B": "x"}, "env={'A=B': ...} is invalid: an environment variable's name is UTF-8"),
        ({"": "x"}, "env={'': ...} is invalid"),
        ({"\udc80": "x"}, "env={'\\udc80': ...} is invalid"),
        # its value not shown: an environment holds secrets
        ({"A": "x\0y"}, "env['A'] is invalid (a NUL at character 1 of 3): an environment"),
        # an exec, a master's JSON and os.environ refuse them: inline failed half-way through
        ({"A": "\ud800"}, "env['A'] is invalid (a lone surrogate at character 0 of 1)"),
        # Linux's MAX_ARG_STRLEN: inline ran it, the local runner failed it four times over
        ({"A": "y" * (128 * 1024 - 2)}, "env['A'] is 131,070 bytes long: no process can be"),
        # a worker took these for its default, or failed on an OverflowError
        *(
            ({"DISCODSL_HTTP_TIMEOUT": value}, f"env['DISCODSL_HTTP_TIMEOUT']={value!r} is not")
            for value in ("abc", "0", "-1", "inf", "1e12")
        ),
    ],
)
def test_an_env_no_environment_can_hold_is_refused_when_the_job_is_declared(
    env: dict[str, str], words: str
) -> None:
    """Refused at run(), each runner its own way: inline by os.environ, leaving part of the
    env set in the program; local by the jobpack's check, advising str(value) for a str."""
    with pytest.raises(SettingsError, match=re.escape(words)):
        job(env=env)(lambda: [])
    with pytest.raises(SettingsError, match=re.escape(words)):
        _counting.run(inputs=["raw://a"], mode="inline", env=env)


def test_every_option_of_disco_classic_jobs_says_what_to_write() -> None:
    # disco.core.Job(name=...), and the classic Worker's defaults() at 0.5.4 with its base's.
    classic = [
        "name",
        "input",
        "map",
        "map_init",
        "map_reader",
        "map_input_stream",
        "map_output_stream",
        "map_shuffle",
        "combiner",
        "partition",
        "partitions",
        "reduce",
        "reduce_init",
        "reduce_reader",
        "reduce_input_stream",
        "reduce_output_stream",
        "reduce_shuffle",
        "ext_params",
        "params",
        "shuffle",
        "sort",
        "sort_buffer_size",
        "status_interval",
        "version",
        "save_results",
        "profile",
        "required_files",
        "required_modules",
        "scheduler",
    ]
    for name in set(classic) - option_names():
        with pytest.raises(SettingsError, match=f"for Disco's {name}=, write "):
            job(**{name: None})(lambda: [])


@pytest.mark.parametrize(
    ("declare", "words"),
    [
        (lambda: map(partitioner=len), "partitioner= is an option of @reduce: put it on the"),
        (lambda: map(combine=True), "combine= is an option of @reduce"),
        (lambda: stage(process=len), "Disco's pipeline Stage(process=): decorate the process"),
        (lambda: stage(combine=True), "Stage(combine=): drop it: a @stage is called once per"),
        (lambda: stage(sort=True), "Stage(sort=): sort inside the stage, as sorted(records)"),
    ],
)
def test_options_of_another_stage_or_of_disco_pipelines_say_where_they_go(
    declare: Any, words: str
) -> None:
    with pytest.raises(JobError, match=re.escape(words)):
        declare()


def _disco_reduce_with_out(iter: Any, out: Any, params: Any) -> None:  # classic.func's nop
    for key, value in iter:
        out.add(key, value)


def _disco_reduce_of_iter(iter: Any, params: Any) -> Any:  # Disco's tutorial's, kvgroup'd
    yield from iter


@pytest.mark.parametrize(
    ("function", "takes", "given"),
    [
        (_disco_reduce_with_out, "iter, out, params", "an output object"),
        # Told only to move `params`, a user kept a body iterating a whole partition.
        (_disco_reduce_of_iter, "iter, params", "its records"),
    ],
)
def test_a_disco_classic_reduce_is_told_what_a_reduce_is_at_declaration(
    function: Any, takes: str, given: str
) -> None:
    with pytest.raises(JobError) as info:
        reduce(function)
    message, name = str(info.value), function.__name__
    assert f"takes ({takes}), Disco's classic reduce({takes})" in message
    assert f"called once per partition with {given}" in message
    assert f"write `def {name}(key, values, params): yield key, ...`" in message
    assert f"@stage(grouping='group_label') def {name}(records, params)" in message


def test_a_disco_map_reader_is_told_what_to_drop() -> None:
    def map_reader(fd: Any, size: int, url: str, params: Any) -> Any:
        return fd

    with pytest.raises(JobError) as info:
        map(reader=map_reader)(str.split)
    assert "drop size (read the stream to its end) and params" in str(info.value)


def test_combine_and_a_combiner_together_are_refused() -> None:
    with pytest.raises(JobError, match=r"give combine=True .* or combiner=fn .*, not both"):
        reduce(combine=True, combiner=total.function)(total.function)


def test_with_and_without_parentheses() -> None:
    @map()
    def one(line: str) -> Any:
        return [(line, 1)]

    @reduce(combine=True, name="summed")
    def two(key: Any, values: Any) -> Any:
        return [(key, sum(values))]

    assert isinstance(one, Stage) and one.name == "one"
    assert two.name == "summed" and two.combine


def test_stages_and_jobs_are_frozen() -> None:
    @job(partitions=2)
    def pipeline() -> list[Any]:
        return [words, total]

    assert isinstance(pipeline, Job)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipeline.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        words.name = "other"  # type: ignore[misc]
    assert pipeline() == [words, total]
    assert pipeline.options.partitions == 2


def test_a_stage_holds_the_spec_a_worker_runs() -> None:
    @reduce(combine=True, sort=False)
    def summed(key: Any, values: Any, params: Any) -> Any:
        yield key, sum(values)

    assert isinstance(summed.spec, StageSpec)
    assert summed.spec.function is summed.function is summed.__wrapped__
    assert (summed.spec.name, summed.spec.kind, summed.spec.grouping) == (
        summed.name,
        summed.kind,
        summed.grouping,
    )
    assert summed.combine and not summed.sort and summed.takes_params

    @job
    def summing() -> list[Any]:
        return [words, summed]

    assert summing.spec().stages == (words.spec, summed.spec)


def test_params_detected() -> None:
    @map
    def with_params(line: str, params: Any) -> Any:
        return []

    assert with_params.takes_params and not words.takes_params


def _p0(params: Any) -> None: ...
def _p1(state: Any, params: Any = None) -> None: ...
def _other(state: Any, extra: Any) -> None: ...
def _varargs(*args: Any) -> None: ...
def _none() -> None: ...
def _params_first(params: Any, line: Any) -> None: ...
def _params_then_option(line: Any, params: Any = None, verbose: bool = False) -> None: ...
def _option_then_params(line: Any, verbose: bool = False, params: Any = None) -> None: ...
def _required_then_params(line: Any, extra: Any, params: Any = None) -> None: ...
def _keyword_only(line: Any, *, params: Any) -> None: ...
def _positional_only(line: Any, params: Any, /) -> None: ...


def _args_only(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        return function(*args)

    return wrapper


def _supplying(extra: Any) -> Any:
    """A decorator that supplies the wrapped function's last argument itself."""

    def decorate(function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(line: Any) -> Any:
            return function(line, extra)

        return wrapper

    return decorate


def _filtered_by_params(function: Any) -> Any:
    """A decorator whose wrapper takes the job's params and calls ``function(line)``."""

    @functools.wraps(function)
    def wrapper(line: Any, params: Any) -> Any:
        return function(line) if line not in params else iter(())

    return wrapper


def _scaled(function: Any) -> Any:
    """A decorator that fills in ``scale`` and passes the rest on by keyword."""

    @functools.wraps(function)
    def wrapper(line: Any, **kwargs: Any) -> Any:
        return function(line, 10, **kwargs)

    return wrapper


def _times(line: Any, scale: int, params: Any = None) -> Any:
    yield line, scale * (params or 1)


def _stop_listed(line: Any, stopwords: Any) -> Any:
    for word in line.split():
        if word not in stopwords:
            yield word, 1


def _each_word(line: Any) -> Any:
    for word in line.split():
        yield word, 1


@pytest.mark.parametrize("mode", ["inline", "local"], indirect=True)
def test_a_wrapper_with_arguments_of_its_own_is_called_by_them(mode: str) -> None:
    # functools.wraps made its signature the wrapped function's: refused for a parameter
    # the wrapper fills in itself, or never given the params the wrapper takes (probe DV F3).
    from discodsl import job

    stopped = map(name="stopped")(_supplying({"the"})(_stop_listed))
    kept = map(name="kept")(_filtered_by_params(_each_word))

    @job
    def stopping() -> list[Any]:
        return [stopped]

    @job
    def keeping() -> list[Any]:
        return [kept]

    # ... and one naming some arguments, passing the rest on: refused (probe DW F2).
    scaled = map(name="scaled")(_scaled(_times))

    @job
    def scaling() -> list[Any]:
        return [scaled]

    assert sorted(scaling.run(["raw://x"], mode=mode, params=3)) == [("x", 30)]
    assert not stopped.spec.takes_params and kept.spec.takes_params
    assert sorted(stopping.run(["raw://the cat"], mode=mode)) == [("cat", 1)]
    inputs = ["raw://the cat", "raw://a dog"]
    assert sorted(keeping.run(inputs, mode=mode, params={"a dog"})) == [("cat", 1), ("the", 1)]


@pytest.mark.parametrize(
    ("function", "before", "expected"),
    [
        (_p0, 0, True),
        (_p1, 1, True),
        (_p1, 0, False),  # `params` must come right after the arguments always given
        (_params_first, 1, False),  # ... not before them
        (_other, 1, False),  # a positional parameter of another name is not params
        (_varargs, 1, False),
        (_none, 0, False),
        (len, 1, False),  # a builtin whose signature says no params
        (functools.partial(_p1, "state"), 0, True),
        (_params_then_option, 1, True),
        (_option_then_params, 1, True),  # by keyword: the option between keeps its default
        (_required_then_params, 1, False),  # ... but no call can fill `extra`
        (_keyword_only, 1, True),
        (_positional_only, 1, True),
        (_args_only(_p1), 1, True),  # the wrapped signature, passed positionally
        (_args_only(_option_then_params), 1, False),  # neither way reaches it
    ],
)
def test_one_rule_says_whether_a_function_takes_params(
    function: Any, before: int, expected: bool
) -> None:
    assert takes_params(function, before) is expected


@pytest.mark.parametrize(
    ("function", "how"),
    [
        (_p1, "keyword"),
        (_params_then_option, "keyword"),
        (_keyword_only, "keyword"),
        (_positional_only, "positional"),
        (_args_only(_p1), "positional"),
        (functools.wraps(_p1)(lambda *args, **kwargs: None), "keyword"),
    ],
)
def test_params_go_by_keyword_where_the_function_itself_takes_it(function: Any, how: str) -> None:
    assert params_passing(function, 1) == how


@pytest.mark.parametrize(
    ("decorator", "function", "fix"),
    [
        (map, lambda params, line: [], "def <lambda>(line, params)"),
        (map, _params_first, "def _params_first(line, params)"),
        (reduce, lambda key, params, values: [], "def <lambda>(key, values, params)"),
        (stage, lambda params: [], "def <lambda>(records, params)"),
    ],
)
def test_params_before_the_arguments_always_given_is_refused_with_the_fix(
    decorator: Any, function: Any, fix: str
) -> None:
    with pytest.raises(JobError, match=re.escape(f"`params` comes last, write `{fix}`")):
        decorator(function)


def test_a_combiner_is_checked_when_declared_as_a_reduce_is() -> None:
    def early(params: Any, key: Any, values: Any) -> Any:
        return [(key, 1)]

    def short(key: Any) -> Any:
        return [(key, 1)]

    with pytest.raises(JobError, match=re.escape("`params` comes last, write `def early(key, ")):
        reduce(combiner=early)(lambda key, values: [])
    with pytest.raises(JobError, match=r"reduce 'combiner of reduce' takes \(key\) but"):
        reduce(combiner=short)(lambda key, values: [])


@pytest.mark.parametrize(
    ("function", "arity"),
    [(_p0, 1), (_p1, 2), (_varargs, None), (_none, 0), (functools.partial(_p1, "s"), 1)],
)
def test_positional_arity(function: Any, arity: int | None) -> None:
    assert positional_arity(function) == arity


def test_partial_and_lambda() -> None:
    def scaled(line: str, factor: int) -> Any:
        return [(line, factor)]

    part = map(functools.partial(scaled, factor=2))
    assert part.name == "scaled" and list(part("x")) == [("x", 2)]
    anonymous = map(lambda line: [(line, 1)], name="anon")
    assert anonymous.name == "anon"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: map(lambda a, b, c: None), "a map is called with (record"),
        (
            lambda: map(lambda line, param: None),
            "name the parameter 'param' `params` to get the job's params, or for ",
        ),
        (lambda: reduce(lambda key: None), "a reduce is called with (key, values"),
        (lambda: stage(lambda: None), "a stage is called with (records"),
        (lambda: map(grouping="shuffle")(lambda line: None), "use one of split"),
        (lambda: reduce(init=3)(lambda k, v: None), "init= must be a function"),
        (lambda: map(42), "decorates a function"),
        (
            lambda: map(lambda line, *, option: None),
            "has the keyword-only parameter 'option' with no default, which no call passes",
        ),
        (lambda: reduce(lambda k, v, *, n: None), "keyword-only parameter 'n' with no default"),
        # "no" is true: the combiner ran; flags are refused unless they are True or False
        (lambda: reduce(combine="no")(lambda k, v: None), "combine='no' .str.: give combine=True"),
        (lambda: reduce(sort=None)(lambda k, v: None), "sort=None .NoneType.: give sort=True"),
        (lambda: map(concurrent=1)(lambda line: None), "concurrent=1 .int.: give concurrent=True"),
    ],
)
def test_bad_stages_fail_at_decoration(build: Any, message: str) -> None:
    # A keyword-only parameter with a default is fine: nothing needs to pass it.
    assert map(lambda line, *, sep=" ": None).kind == "map"
    with pytest.raises(JobError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build()


def _plain(line: Any) -> Any:
    return [(line, 1)]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: map(partitons=2),
            "@map has no option 'partitons' (partitions= is an option of @job: "
            "write @job(partitions=...)); the options of @map are concurrent, done, "
            "grouping, init, name, reader",
        ),
        (
            lambda: reduce(partitoner=_plain),
            "@reduce has no option 'partitoner' (did you mean partitioner=?); the options "
            "of @reduce are combine, combiner, concurrent, done, grouping, init, name, "
            "partitioner, sort",
        ),
        (
            lambda: reduce(partition=_plain),
            "@reduce has no option 'partition' (for Disco's partition=, write "
            "@reduce(partitioner=fn), called as fn(key, n); for how many, partitions=N); the "
            "options of @reduce are",
        ),
        (
            lambda: reduce(reader=_plain),
            "@reduce has no option 'reader' (only the job's first stage reads its inputs: "
            "put reader= on that stage's @map)",
        ),
        (lambda: stage(_plain, colour="red"), "@stage has no option 'colour'; the options"),
    ],
)
def test_unknown_stage_options_are_named_with_the_valid_ones(build: Any, message: str) -> None:
    with pytest.raises(JobError) as info:
        build()
    assert message in str(info.value)


def test_stage_decorators_keep_their_signature_and_docstring() -> None:
    assert "reader" in inspect.signature(map).parameters
    assert "partitioner" in inspect.signature(reduce).parameters
    assert stage.__name__ == "stage"
    assert (stage.__doc__ or "").startswith("Declare a general stage")


class _AsyncCall:
    async def __call__(self, line: str) -> Any:
        return None


async def _fetch(line: str) -> Any:
    return None


async def _fetch_lines(line: str) -> Any:
    yield line, 1


@pytest.mark.parametrize(
    "function",
    [
        _fetch,
        _fetch_lines,
        functools.partial(_fetch),
        _AsyncCall(),
    ],
)
def test_async_stage_refused(function: Any) -> None:
    with pytest.raises(JobError, match=r"is async; .* write it as a plain `def`"):
        map(function, name="fetch")


def test_a_plain_wrapper_around_an_async_function_is_declared() -> None:
    # It may run what it wraps (asyncio.run): it was refused as async (probe DL F11); one
    # that returns the coroutine is told so when it runs (test_jobs).
    assert map(_args_only(_fetch), name="fetch").name == "fetch"


def _pipeline(spec: Any) -> list[tuple[str, str, str]]:
    return [(s.name, s.kind, s.grouping) for s in spec.stages]


def test_a_job_may_start_with_a_reduce_over_record_files() -> None:
    """Disco's reduce-only jobs: one reduce task over all the inputs (group_all, which reads
    every label of a dir:// input too); a later group_label stage keeps its grouping."""

    @map
    def swap(pair: tuple[str, int]) -> Iterator[tuple[int, str]]:
        yield pair[1], pair[0]

    @job
    def reduce_first() -> list[Any]:
        return [total, swap]

    assert _pipeline(reduce_first.spec()) == [
        ("total", "reduce", "group_all"),
        ("swap", "map", "split"),
    ]
    assert reduce_first.spec().partitions == 1


def test_a_partitioned_reduce_only_job_labels_its_inputs_in_a_named_map_first() -> None:
    @reduce(combine=True, partitioner=lambda key, n: 0)
    def add(key: Any, values: Any) -> Any:
        yield key, sum(values)

    @job(partitions=3)
    def reduce_only() -> list[Any]:
        return [add]

    spec = reduce_only.spec()
    assert _pipeline(spec) == [("add_inputs", "map", "split"), ("add", "reduce", "group_label")]
    assert list(spec.stages[0].function(("k", 1))) == [("k", 1)]  # it only passes records on
    assert spec.stages[1] is add.spec  # the reduce, its partitioner and combiner unchanged
    assert reduce_only.stages == (add,)  # the job's own stages are what its body returned


def test_the_hidden_map_takes_a_free_name() -> None:
    @map(name="total_inputs")
    def clash(pair: Any) -> Any:
        yield pair

    @job(partitions=2)
    def crowded() -> list[Any]:
        return [total, clash]

    names = [s.name for s in crowded.spec().stages]
    assert names[1:] == ["total", "total_inputs"] and names[0] not in names[1:]


def test_partitions_none_is_one_unpartitioned_output_and_one_reduce_task() -> None:
    @stage(grouping="group_node_label")
    def per_node(records: Any) -> Any:
        yield from records

    @job(partitions=None)
    def unpartitioned() -> list[Any]:
        return [words, total, per_node]

    spec = unpartitioned.spec()
    assert spec.partitions == 0  # what the worker sees: Disco's 0/None, never partitioned
    assert _pipeline(spec) == [
        ("words", "map", "split"),
        ("total", "reduce", "group_all"),
        ("per_node", "stage", "group_node"),
    ]
    assert unpartitioned.options.partitions is None
    assert repr(unpartitioned) == (
        "<Job 'unpartitioned': words -> total -> per_node, partitions=None>"
    )
    assert _pipeline(
        unpartitioned.spec(unpartitioned.options.model_copy(update={"partitions": 2}))
    ) == [
        ("words", "map", "split"),
        ("total", "reduce", "group_label"),
        ("per_node", "stage", "group_node_label"),
    ]


def _to_zero(key: Any, n: int) -> int:
    return 0


@pytest.mark.parametrize(
    "declare",
    [
        lambda: reduce(partitioner=_to_zero)(lambda word, counts: [(word, sum(counts))]),
        lambda: stage(partitioner=_to_zero)(lambda records: records),
    ],
)
def test_partitions_none_with_a_partitioner_fails_at_declaration(declare: Any) -> None:
    second = declare()
    with pytest.raises(JobError, match=r"partitions=None.*never be called.*partitions=4"):

        @job(partitions=None)
        def unpartitioned() -> list[Any]:
            return [words, second]


def test_partitions_none_with_a_partitioner_fails_at_run_before_any_task() -> None:
    second = reduce(partitioner=_to_zero, name="zeroed")(lambda w, c: [(w, sum(c))])

    @job(partitions=2)
    def partitioned() -> list[Any]:
        return [words, second]

    for mode in ("inline", "local"):
        with pytest.raises(JobError, match=r"stage 'zeroed' has a partitioner.*partitions=None"):
            partitioned.run(["raw://a b"], mode=mode, partitions=None)  # type: ignore[arg-type]
    with pytest.raises(JobError, match="partitions=None"):
        partitioned.with_options(partitions=None)


@pytest.mark.parametrize(
    ("stages", "why"),
    [
        (lambda: [stage(partitioner=_to_zero)(lambda records: records)], "is the first stage"),
        (
            lambda: [words, stage(grouping="group_all", partitioner=_to_zero)(lambda r: r)],
            "takes every record in one task (grouping='group_all')",
        ),
        (
            lambda: [words, reduce(grouping="group_node", partitioner=_to_zero)(lambda k, v: v)],
            "takes every record of a node in one task (grouping='group_node')",
        ),
    ],
    ids=["first", "group_all", "group_node"],
)
def test_a_partitioner_that_would_never_be_called_fails_at_declaration(
    stages: Any, why: str
) -> None:
    # Accepted without a word, as partitions=None is not, for the same reason: a user who
    # meant to spread a group_all summary over partitions got one task and no hint.
    listed = stages()
    with pytest.raises(JobError, match=re.escape(why) + ".*never be called"):

        @job(partitions=4)
        def spread() -> list[Any]:
            return listed


def test_duplicate_stage_names_refused() -> None:
    def other(line: str) -> Iterator[tuple[str, int]]:
        yield line, 1

    other.__name__ = "words"
    with pytest.raises(JobError, match=r"two stages named 'words'.*e\.g\. @map\(name='words_2'\)"):

        @job
        def same_names() -> list[Any]:
            return [words, map(other), total]


def _logged(function: Any) -> Any:
    """A user's decorator without functools.wraps."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def test_two_stages_named_after_a_decorators_wrapper_are_told_of_functools_wraps() -> None:
    # "two stages named 'wrapper'", a name the user never wrote (probe DV F4).
    first, second = map(_logged(words)), reduce(_logged(total))
    with pytest.raises(JobError) as info:

        @job
        def logged() -> list[Any]:
            return [first, second]

    assert str(info.value).endswith(
        "; or, if '_logged.<locals>.wrapper' is a decorator's wrapper, add "
        "@functools.wraps(function) to it, which names the stage after the function it wraps"
    )


class _NamedOddly:
    __name__ = 5

    def __call__(self, line: str) -> Iterator[tuple[str, int]]:
        yield line, 1


def test_a_callable_whose_name_is_no_str_is_named_after_its_class() -> None:
    # TypeError from inside the naming: normalize() argument 2 must be str (probe DV F9).
    assert map(_NamedOddly()).name == "_NamedOddly"


def test_a_stage_listed_twice_is_told_how_to_make_a_second_of_its_function() -> None:
    """The advice was @map(name='words_2'), and applied to the stage in hand, map(words,
    name='words_2') was refused as decorating it again, "once": neither led to the fix."""
    with pytest.raises(JobError) as info:

        @job
        def twice() -> list[Any]:
            return [words, words, total]

    fix = "words_2 = map(words.function, name='words_2')"
    assert str(info.value).endswith(f"give one another name, e.g. {fix}")
    with pytest.raises(JobError) as again:
        map(words, name="words_2")
    assert "decorate its plain function, words.function" in str(again.value)
    words_2 = map(words.function, name="words_2")  # the fix, as both say it
    assert words_2.name == "words_2" and words_2.function is words.function


def test_a_duplicate_reduce_is_told_to_rename_with_reduce() -> None:
    with pytest.raises(
        JobError, match=r"e\.g\. total_2 = reduce\(total\.function, name='total_2'\)"
    ):

        @job
        def twice() -> list[Any]:
            return [words, total, total]


def test_the_second_stage_advised_keeps_every_option_of_the_first() -> None:
    # The advice made a reduce of the same function with none of its options: combine,
    # sort=False, its partitioner and hooks gone, and the job behaving otherwise.
    def begin(params: Any) -> None:
        return None

    def by_length(key: str, n: int) -> int:
        return len(key) % n

    @reduce(combine=True, sort=False, partitioner=by_length, init=begin)
    def summed(word: str, counts: Iterable[int]) -> Iterator[tuple[str, int]]:
        yield word, sum(counts)

    with pytest.raises(JobError) as info:

        @job
        def twice() -> list[Any]:
            return [words, summed, summed]

    fix = str(info.value).split("e.g. ", 1)[1]
    assert fix == (
        "summed_2 = reduce(summed.function, name='summed_2', init=summed.init, "
        "partitioner=summed.partitioner, combine=True, sort=False)"
    )
    summed_2 = eval(fix.split(" = ", 1)[1], {"reduce": reduce, "summed": summed})
    assert summed_2.spec == dataclasses.replace(summed.spec, name="summed_2")
    with pytest.raises(JobError, match=re.escape(f"another stage of it, named apart: {fix}")):
        reduce(summed)


def test_the_second_stage_advised_of_a_stage_named_apart_from_its_function_is_python() -> None:
    # name='split-words' gave `split-words_2 = map(split-words.function, ...)`.
    @map(name="split-words")
    def split(line: str) -> Iterator[tuple[str, int]]:
        yield line, 1

    assert second_stage(split) == "split_2 = map(split.function, name='split-words_2')"


def test_the_advice_for_a_lambdas_stage_listed_twice_names_no_variable_it_guessed() -> None:
    # It gave `map_2 = map(map.function, name='map_2')`: discodsl's own map, no stage.
    for declared, kind in (
        (map(lambda line: [(line, 1)]), "map"),
        (reduce(lambda k, v: []), "reduce"),
    ):
        advice = second_stage(declared)
        assert advice == (
            f"STAGE_2 = {kind}(STAGE.function, name='{kind}_2'), STAGE being the variable "
            "that holds the stage"
        )


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("my stage", "my_stage"),
        ("a/b", "a_b"),
        ("wörter", "worter"),
        ("词", "u8bcd"),
        ("", "stage"),
        # Fetched over HTTP from a real master, a result URL holding one is another path
        # (a fragment, a query, an escape, "+" a space): 404 (probe DP F6).
        ("a#b", "a_b"),
        ("a?b", "a_b"),
        ("a%41", "a_41"),
        ("a+b", "a_b"),
        ("a\\b", "a_b"),
        # a name of the file system's: inline wrote the stage's files in its run's parent
        # directory, where two runs read each other's (probe DR F1)
        ("..", "_"),
        (".", "_"),
    ],
)
def test_a_stage_name_a_disco_node_cannot_take_is_refused_when_declared(
    name: str, fix: str
) -> None:
    said = rf"name={re.escape(repr(name))}.*ASCII.*write e\.g\. name={fix!r}"
    with pytest.raises(JobError, match=said):
        map(name=name)(lambda line: [(line, 1)])


def test_a_stage_name_too_long_for_a_nodes_file_names_is_refused_when_declared() -> None:
    # 230 characters ran inline, then failed locally on a bare OSError after every task, and
    # 250 failed every task with advice about free space (a file name holds 255 bytes).
    assert map(name="w" * 128)(lambda line: [(line, 1)]).name == "w" * 128
    with pytest.raises(JobError, match=r"has 129 characters: a stage's name may have at most 128"):
        map(name="w" * 129)(lambda line: [(line, 1)])
    long = "w" * 200
    exec(f"def {long}(line):\n    yield line, 1", namespace := {})
    with pytest.raises(JobError, match=r"has 200 characters.*give it a shorter name="):
        map(namespace[long])


def test_a_functions_name_a_disco_node_cannot_take_names_its_stage_cleaned() -> None:
    def wörter(line: str) -> Any:
        yield line, 1

    def zählen(line: str) -> Any:  # was z_hlen, as zöhlen: two stages of one name
        yield line, 1

    def zöhlen(line: str) -> Any:
        yield line, 1

    assert [map(f).name for f in (wörter, zählen, zöhlen)] == ["worter", "zahlen", "zohlen"]

    @job(partitions=None)
    def counted() -> list[Any]:
        return [map(zählen), map(zöhlen)]

    results = counted.run(["raw://a"], mode="inline")
    assert list(results.stage("zählen")) == [("a", 1)]  # as the function is named
    assert zählen_job.spec(zählen_job.options).name == "zahlen_job"  # as stages': z_hlen_job


@job(partitions=None)
def zählen_job() -> list[Any]:
    return [map(lambda line: [(line, 1)])]


def test_names_of_letters_with_no_plain_form_stay_apart() -> None:
    # A Greek sigma and pi were both "_": two stages of one name, the job refused.
    def σ(line: str) -> Any:
        yield line, 1

    def π(line: str) -> Any:
        yield line, 1

    sigma, pi = map(σ), map(π)
    assert [sigma.name, pi.name] == ["u03c3", "u03c0"]
    # Past the 65,536 first, as Python escapes them: U+2C00 then 0 is not U+2C000.
    from discodsl.worker.spec import cleaned_stage_name

    assert cleaned_stage_name("\u2c000") != cleaned_stage_name("\U0002c000")

    @job(partitions=None)
    def both() -> list[Any]:
        return [sigma, pi]

    results = both.run(["raw://a"], mode="inline")
    assert list(results.stage(sigma)) == [("a", 1)]
    assert list(results.stage("\u03c3")) == [("a", 1)]  # its function's name


@pytest.mark.parametrize(
    "names",
    [
        ("\u0926\u093f\u0928", "\u0926\u0940\u0928"),  # Devanagari vowel signs: day, poor
        ("\u0e01\u0e34\u0e19", "\u0e01\u0e31\u0e19"),  # Thai vowel marks: eat, together
        ("\u0915\u094d\u092f\u093e", "\u0915\u092f\u093e"),  # a virama, a combining mark
    ],
)
def test_names_differing_in_a_vowel_sign_or_mark_of_another_script_stay_apart(
    names: tuple[str, str],
) -> None:
    # Both stages were "u0926_u0928": a job of two ordinary functions could not be declared.
    from discodsl.worker.spec import cleaned_stage_name, stage_name_ok

    first, second = (cleaned_stage_name(name) for name in names)
    assert first != second and stage_name_ok(first) and stage_name_ok(second)


def test_a_long_name_of_letters_written_as_code_points_is_shortened_and_kept_apart() -> None:
    # 26 CJK letters escaped passed 128 characters: refused, naming "u7edfu8ba1..." alone.
    namespace: dict[str, Any] = {}
    letters = "\u7edf\u8ba1\u6bcf\u4e2a\u7528\u6237" * 5
    for end in ("\u4e00", "\u4e8c"):
        exec(f"def {letters}{end}(line):\n    yield line, 1\n", namespace)
    one, two = (map(namespace[letters + end]) for end in ("\u4e00", "\u4e8c"))
    assert one.name != two.name and len(one.name) <= 128 and one.name.startswith("u7edfu8ba1")

    @job(partitions=None)
    def both() -> list[Any]:
        return [one, two]

    results = both.run(["raw://a"], mode="inline")
    assert list(results) == [(("a", 1), 1)]
    # Asked for by the function's name, as a shorter one is: "no stage 'u7edf...'", uncut
    # (probe CM F12).
    assert list(results.stage(letters + "\u4e00")) == [("a", 1)]


def test_job_names_long_only_as_their_letters_are_escaped_stay_apart() -> None:
    # Cut at 199 characters: two jobs, one Disco name prefix, ending in half an escape.
    from discodsl.worker.spec import PREFIX_MAX, cleaned_prefix

    one, two = cleaned_prefix("\u6570" * 41), cleaned_prefix("\u6570" * 40 + "\u5b57")
    assert one != two and len(one) == len(two) == PREFIX_MAX
    assert cleaned_prefix("words") == "words"


def test_a_job_built_by_hand_with_options_of_another_type_is_told_what_to_pass() -> None:
    # A bare "AttributeError: 'dict' object has no attribute 'partitions'".
    from discodsl import Job, JobOptions

    stages = (map(lambda line: [(line, 1)]),)
    with pytest.raises(JobError, match=r"options=\{'partitions': 3\}, which is no JobOptions"):
        Job("by_hand", stages, {"partitions": 3})  # type: ignore[arg-type]
    assert Job("by_hand", stages, JobOptions(partitions=3)).options.partitions == 3


def test_lambdas_are_named_after_their_kind_and_told_how_to_rename() -> None:
    pair = [map(lambda line: [(line, 1)]), reduce(lambda key, values: [(key, sum(values))])]
    assert [stage.name for stage in pair] == ["map", "reduce"]

    @job
    def anonymous() -> list[Any]:
        return pair

    assert dict(anonymous.run(["raw://a", "raw://a"], mode="inline")) == {"a": 2}
    with pytest.raises(JobError, match=r"map\(lambda \.\.\., name='map_2'\)"):

        @job
        def twice() -> list[Any]:
            return [pair[0], map(lambda record: [record]), pair[1]]


def test_non_stage_refused() -> None:
    with pytest.raises(JobError, match="decorate it with @map"):

        @job
        def plain() -> list[Any]:
            return [print]


def test_a_job_among_the_stages_is_told_how_to_take_its_stages() -> None:
    # "decorate it with @map, @reduce or @stage", for a job: [*job(), ...] composes.
    @job
    def inner() -> list[Any]:
        return [map(lambda line: [(line, 1)])]

    with pytest.raises(
        JobError, match=r"a job, not a stage: put its stages in the list, `\[\*inner\(\), \.\.\.\]`"
    ):

        @job
        def outer() -> list[Any]:
            return [inner]

    @job
    def composed() -> list[Any]:
        return [*inner()]

    assert list(composed.run(["raw://a"], mode="inline")) == [("a", 1)]


def test_empty_pipeline_refused() -> None:
    with pytest.raises(JobError, match="non-empty list of stages"):

        @job
        def empty() -> list[Any]:
            return []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"partitions": 0}, "partitions=0 is invalid.*use an integer from 1 to.*or None"),
        ({"partitions": 1.0}, "partitions=1.0 is invalid"),
        ({"partitions": 10**7}, "partitions=10000000 is invalid.*use an integer from 1 to 100,000"),
        ({"progress": "no"}, r"progress='no' is invalid.*: use True, False, or None$"),
        ({"owner": 5}, "owner=5 is invalid.*: use a string, or None"),
        ({"partitions": "many"}, "partitions='many' is invalid"),
        ({"memory_budget": 10}, "memory_budget=10 is invalid"),
        ({"prefix": "a.b"}, "prefix='a.b' is invalid.*ASCII letters, digits and underscores"),
        ({"prefix": "cg-smoke"}, r"prefix='cg-smoke' is invalid.*e\.g\. prefix='cg_smoke'"),
        ({"prefix": "σύνολο"}, "prefix='σύνολο' is invalid.*ASCII letters.*a job's own name"),
        ({"partitons": 2}, r"unknown job option 'partitons' \(did you mean partitions=\?\)"),
        ({"cores": 2}, r"unknown job option 'cores' \(did you mean max_cores=\?\)"),
        ({"max_retries": 2}, r"'max_retries' \(did you mean max_failures=\?\)"),
        ({"retries": 2}, r"'retries' \(did you mean max_failures=\?\)"),
        ({"proccesses": 2}, r"'proccesses' \(did you mean workers=\?\)"),
        ({"environment": {}}, r"'environment' \(did you mean env=\?\)"),
        ({"Master": "x"}, r"'Master' \(did you mean master=\? It is run\(\)'s own\.\)"),
        ({"zzz": 2}, r"unknown job option 'zzz': the options are"),
        # In pydantic's words: "env.A=<an int>", "env.1.[key]=<an int>" (probe DV F6).
        ({"env": {"A": 1}}, r"^job option env= is invalid: env\['A'\] is an int, not a str: use"),
        ({"env": {1: "x"}}, r"^job option env= is invalid: the name 1 is an int, not a str: use"),
        ({"env": {"A": None}}, r"^job option env= is invalid: env\['A'\] is a NoneType, not a"),
        # Every worker failed to start, blamed on its Python (probe DV S1).
        ({"env": {"PYTHONHASHSEED": "x"}}, r"PYTHONHASHSEED'\]='x' is invalid: no worker's Python"),
        ({"env": {"PYTHONHASHSEED": "4294967296"}}, r"use 'random' or an integer from 0 to"),
    ],
)
def test_bad_options_fail_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        job(**options)


def test_numpys_numbers_are_taken_as_the_python_numbers_they_hold() -> None:
    # A count of partitions computed with numpy (np.int64) was refused: "Input should be a
    # valid integer: use an integer" (probe DV F7).
    numpy = pytest.importorskip("numpy")

    @job(partitions=numpy.int64(4), workers=numpy.int32(2), compress=numpy.True_)
    def counted() -> list[Any]:
        return [words, total]

    options = counted.with_options(
        max_failures=numpy.uint8(1), memory_budget=numpy.int64(64 << 20)
    ).options
    taken = (options.partitions, options.workers, options.compress, options.max_failures)
    assert taken == (4, 2, True, 1) and options.memory_budget == 64 << 20
    assert [type(value) for value in taken] == [int, int, bool, int]
    with pytest.raises(SettingsError, match="partitions=0 is invalid"):
        job(partitions=numpy.int64(0))
    params = numpy.int64(3)
    assert counted.with_options(params=params).options.params is params  # as given


def test_numpys_bools_are_taken_as_stage_flags() -> None:
    # @reduce(combine=np.True_) was refused: "combine=np.True_ (bool): give combine=True or
    # combine=False", where @job(compress=np.True_) was taken (probe EG F2).
    numpy = pytest.importorskip("numpy")
    summed = reduce(combine=numpy.True_, sort=numpy.False_)(lambda k, v: [(k, sum(v))])
    mapped = map(concurrent=numpy.bool_(True))(lambda line: [(line, 1)])
    taken = (summed.spec.combine, summed.spec.sort, mapped.spec.concurrent)
    assert taken == (True, False, True) and {type(flag) for flag in taken} == {bool}
    with pytest.raises(JobError, match=r"combine=array\(\[ True\]\) \(ndarray\): give"):
        reduce(combine=numpy.array([True]))(lambda k, v: [(k, sum(v))])


def test_help_on_job_options_lists_every_option_with_what_it_does() -> None:
    # Errors send users there; it showed the signature alone.
    import pydoc

    from discodsl import JobOptions

    text = " ".join(pydoc.render_doc(JobOptions, renderer=pydoc.plaintext).split())
    for spec in dataclasses.fields(JobOptions):
        description = " ".join(str(spec.metadata["description"]).split())
        assert f"``{spec.name}`` (default " in text and description in text, spec.name


def test_options_validated_again_at_run() -> None:
    @job
    def pipeline() -> list[Any]:
        return [words, total]

    with pytest.raises(SettingsError, match="partitions=-1"):
        pipeline.run([], mode="inline", partitions=-1)
    with pytest.raises(SettingsError, match="mode='fast'"):
        pipeline.run([], mode="fast")  # type: ignore[arg-type]


def test_repr_and_html() -> None:
    @job(partitions=3)
    def pipeline() -> list[Any]:
        return [words, total]

    assert repr(pipeline) == "<Job 'pipeline': words -> total, partitions=3>"
    assert "<table>" in pipeline._repr_html_() and "group_label" in pipeline._repr_html_()


def test_a_long_function_name_makes_a_prefix_a_master_runs() -> None:
    def body() -> list[Any]:
        return [stage(_plain)]

    body.__name__ = body.__qualname__ = "n" * 300
    name = job(body).spec().name  # cut to 199, with a hash of the whole: apart from its like
    assert len(name) == 199 and name.startswith("n" * 190) and re.fullmatch(r"n+_[0-9a-f]{8}", name)
    with pytest.raises(SettingsError, match="prefix"):
        job(prefix="p" * 200)(body)


def test_calling_the_decorator_as_pythons_map_says_which_map_it_is() -> None:
    with pytest.raises(
        TypeError, match=r"discodsl's map\(\) is the stage decorator.*builtins\.map"
    ):
        map(str.upper, ["a", "b"])
    with pytest.raises(TypeError, match=r"replaced functools\.reduce here: call that one"):
        reduce(max, [1, 2])


def test_a_stage_asked_to_run_and_a_job_called_with_inputs_say_what_to_write() -> None:
    """``words.run(...)`` said "'StageSpec' object has no attribute 'run'", and
    ``wc(inputs)`` "Job.__call__() takes 1 positional argument but 2 were given"."""

    @map
    def words(line: str) -> Any:
        yield line, 1

    @job
    def wc() -> list[Any]:
        return [words]

    with pytest.raises(AttributeError, match=r"map stage 'words' has no run\(\): .*\.run\("):
        words.run(["raw://a"])
    with pytest.raises(TypeError, match=r"run it, wc\.run\(inputs=\[\.\.\.\]\)"):
        wc(["raw://a"])
    assert wc() == [words]
    assert getattr(words, "submit", None) is None


def _hashing(key: Any, n: int) -> int:
    return hash(key) % n


def _nested_hashing(key: Any, n: int) -> int:
    return (lambda: hash(key))() % n


def _crc(key: Any, n: int) -> int:
    return zlib.crc32(str(key).encode()) % n


def _bucket(key: Any) -> int:
    return hash(key)


_my_hash = hash


class _HashingPartitioner:
    def __call__(self, key: Any, n: int) -> int:
        return self.bucket(key) % n

    def bucket(self, key: Any) -> int:
        return _bucket(key)


class _Sharder:
    """A class of the program's whose split() hashes: no str's split does."""

    def split(self, item: Any) -> int:
        return hash(item) % 7


class _Touchy:
    """An object of the program's whose every attribute it has not fails."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


_TOUCHY = _Touchy()


@functools.lru_cache
def _cached_bucket(key: Any) -> int:
    return hash(key)


def _with_default(key: Any, n: int, f: Any = hash) -> int:
    return int(f(key)) % n


@pytest.mark.parametrize(
    "partitioner",
    [
        _hashing,
        _nested_hashing,
        lambda k, n: hash(k) % n,
        functools.partial(_hashing),
        # Through a helper, an alias, the method, an object: not warned of (probe DN F3).
        lambda k, n: _bucket(k) % n,
        lambda k, n: _my_hash(k) % n,
        lambda k, n: k.__hash__() % n,
        _HashingPartitioner(),  # through its own method, then a helper (probe DQ F1)
        lambda k, n: builtins.hash(k) % n,
        _with_default,
        lambda k, n: _cached_bucket(k) % n,
        functools.partial(lambda k, n, f: f(k) % n, f=hash),
    ],
)
def test_a_partitioner_calling_hash_is_warned_of_at_the_users_line(partitioner: Any) -> None:
    # Local workers fork from one process and share its hash seed: the job was right here
    # and gave a key in several partitions on a cluster, whose tasks each have their own.
    with pytest.warns(UnstableHashWarning, match=r"calls hash\(\).*zlib.crc32") as caught:
        reduce(partitioner=partitioner)(total.function)
    assert caught[0].filename == __file__


class _Stable:
    @staticmethod
    def hash(key: Any) -> int:  # a library's stable hash, named so (mmh3.hash)
        return zlib.crc32(str(key).encode())


@pytest.mark.parametrize(
    "partitioner",
    [
        _crc,
        lambda k, n: _Stable.hash(k) % n,
        lambda k, n: _crc(k, n),
        lambda k, n: default_partition(k, n),  # discodsl's own, which calls hash() inside
        lambda k, n: _crc((k, _TOUCHY is None), n),  # looked at, and nothing raised
        # a str's split(), not the program's _Sharder's, which hashes (probe DS F1)
        lambda k, n: int(k.split(",")[0]) % n,
    ],
)
def test_a_partitioner_with_a_stable_hash_is_not_warned_of(partitioner: Any, recwarn: Any) -> None:
    reduce(partitioner=partitioner)(total.function)
    assert not [w for w in recwarn if issubclass(w.category, UnstableHashWarning)]


def test_a_disco_partition_taking_params_is_told_to_use_a_closure() -> None:
    def partition(key: Any, nr_partitions: int, params: Any) -> int:
        return 0

    with pytest.raises(
        JobError, match=re.escape("for Disco's partition(key, n, params), give it params")
    ):
        reduce(partitioner=partition)(total.function)


def test_a_second_stage_of_the_same_function_is_no_stage_defined_again() -> None:
    # reduce(sort=False)(total.function) was said to be 'total' defined again since (its
    # cell run again?), at every run, though nothing was.
    namespace: dict[str, Any] = {}
    exec(
        "from discodsl import job, map, reduce\n"
        "@map\ndef ones(line):\n    yield line, 1\n"
        "@reduce\ndef total(key, ones):\n    yield key, sum(ones)\n"
        "total_unsorted = reduce(sort=False)(total.function)\n"
        "@job\ndef counted():\n    return [ones, total_unsorted]\n",
        namespace,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(namespace["counted"].run(["raw://a"], mode="inline")) == [("a", 1)]


def test_a_job_run_after_its_stage_was_defined_again_says_so() -> None:
    # A notebook: the stage's cell edited and run again, the job's not; the job ran the
    # old stage, silently (and with cache=True served the old results at once).
    namespace: dict[str, Any] = {}
    runs = iter(range(1, 100))

    def cell(source: str) -> None:  # each cell run compiled as a file of its own
        exec(compile(source, f"<ipython-input-{next(runs)}>", "exec"), namespace)

    words = "@map\ndef words(line):\n    yield line, {n}\n"
    cell("from discodsl import job, map\n" + words.format(n=1))
    cell("@job(partitions=None)\ndef counted():\n    return [words]\n")
    counted = namespace["counted"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(counted.run(["raw://a"], mode="inline")) == [("a", 1)]
    cell(words.format(n=2))
    cell("@job(partitions=None)\ndef other():\n    return [words]\n")  # probe CW F5
    with pytest.warns(RedefinedStageWarning, match=r"runs stage 'words' as it was when") as got:
        assert list(counted.run(["raw://a"], mode="inline")) == [("a", 1)]
    assert got[0].filename == __file__
    assert "declare the job again (run its @job cell)" in str(got[0].message)
    cell("@job(partitions=None)\ndef counted():\n    return [words]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(namespace["counted"].run(["raw://a"], mode="inline")) == [("a", 2)]


# A module of one stage, ``words``, yielding each line with ``n``.
_STAGES = "from discodsl import map\n@map\ndef words(line):\n    yield line, {n}\n"


def _job_of_a_stages_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> tuple[Path, Any, dict[str, Any]]:
    """A module ``NAME_stages`` of ``_STAGES`` (n=1), imported for this test alone, and a
    namespace, as a notebook's, whose job ``counted`` runs its ``words``."""
    module = tmp_path / f"{name}_stages.py"
    module.write_text(_STAGES.format(n=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, f"{name}_stages", raising=False)
    imported = importlib.import_module(f"{name}_stages")
    monkeypatch.setitem(sys.modules, f"{name}_stages", imported)
    namespace: dict[str, Any] = {"words": imported.words}
    exec(
        "from discodsl import job\n@job(partitions=None)\ndef counted():\n    return [words]\n",
        namespace,
    )
    return module, imported, namespace


def test_a_job_run_after_its_stages_module_was_reloaded_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A notebook with %autoreload 2 and `from stages import words`: the module was edited
    # and reloaded, the notebook's name kept the old stage, and the job ran it, silently
    # (with the module's new helpers: old and new code mixed).
    module, imported, namespace = _job_of_a_stages_module(tmp_path, monkeypatch, "reloaded")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(namespace["counted"].run(["raw://a"], mode="inline")) == [("a", 1)]
    module.write_text(_STAGES.format(n=2) + "# edited\n")
    importlib.reload(imported)
    with pytest.warns(RedefinedStageWarning, match=r"module 'reloaded_stages' has been") as got:
        assert list(namespace["counted"].run(["raw://a"], mode="inline")) == [("a", 1)]
    assert "import it again" in str(got[0].message)


def test_a_job_run_after_its_stages_module_was_imported_again_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Dropped from sys.modules and imported again after an edit, as notebooks do instead of
    # reloading it: no warning since reloads were told by the module's __spec__ (probe CW
    # F16, a regression).
    module, _, namespace = _job_of_a_stages_module(tmp_path, monkeypatch, "reimported")
    module.write_text(_STAGES.format(n=2) + "# edited\n")
    del sys.modules["reimported_stages"]
    importlib.import_module("reimported_stages")
    with pytest.warns(RedefinedStageWarning, match=r"module 'reimported_stages' has been"):
        assert list(namespace["counted"].run(["raw://a"], mode="inline")) == [("a", 1)]


def test_stages_run_again_from_their_own_lines_are_warned_of_and_a_scripts_own_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stages file %run again (its defs run again, in one file) was not warned of (probe
    # CY F5); a script that imports a stage and then defines its own of that name, for a
    # second job, was told its cell ran again (CY F2). Both regressions.
    stages = _STAGES
    namespace: dict[str, Any] = {}
    exec(compile(stages.format(n=1), "stages.py", "exec"), namespace)
    exec(
        "from discodsl import job\n@job(partitions=None)\ndef wc():\n    return [words]\n",
        namespace,
    )
    exec(compile(stages.format(n=2), "stages.py", "exec"), namespace)  # %run stages.py
    with pytest.warns(RedefinedStageWarning, match=r"runs stage 'words' as it was when"):
        namespace["wc"].run(["raw://a"], mode="inline")
    (tmp_path / "shared_stages.py").write_text(stages.format(n=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "shared_stages", raising=False)
    script: dict[str, Any] = {"__name__": "script"}
    exec(
        compile(
            "from discodsl import job, map\nfrom shared_stages import words\n"
            "@job(partitions=None)\ndef first():\n    return [words]\n"
            "@map\ndef words(line):\n    yield line, 3\n"
            "@job(partitions=None)\ndef second():\n    return [words]\n",
            "script.py",
            "exec",
        ),
        script,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(script["first"].run(["raw://a"], mode="inline")) == [("a", 1)]


def test_a_job_of_a_reloaded_module_says_to_import_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job declared in the module %autoreload reloaded, held by the notebook: it was told
    # to "run its @job cell", which no cell holds (probe CP F2).
    module = tmp_path / "reloaded_job.py"
    source = "from discodsl import job, map\n@map\ndef words(line):\n    yield line, {n}\n"
    source += "@job(partitions=None)\ndef counted():\n    return [words]\n"
    module.write_text(source.format(n=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = importlib.import_module("reloaded_job")
    monkeypatch.setitem(sys.modules, "reloaded_job", imported)
    held = imported.counted
    module.write_text(source.format(n=2) + "# edited\n")
    importlib.reload(imported)
    with pytest.warns(RedefinedStageWarning) as got:
        assert list(held.run(["raw://a"], mode="inline")) == [("a", 1)]
    said = str(got[0].message)
    assert "its module 'reloaded_job' has been reloaded since (autoreload?)" in said
    assert "import the job again (from reloaded_job import counted)" in said
    assert "cell" not in said


def test_a_job_run_after_its_combiner_was_defined_again_says_so() -> None:
    # The combiner's cell fixed and run again: the reduce held the old one, silently, while
    # a fixed helper the map calls by name was used: half the fix (probe CP F9).
    namespace: dict[str, Any] = {}

    def cell(source: str, number: int) -> None:  # each cell run compiled as a file of its own
        exec(compile(source, f"/tmp/ipykernel_1/{number}.py", "exec"), namespace)

    combiner = "def add_up(key, values):\n    yield key, sum(values) * {n}\n"
    cell("from discodsl import job, map, reduce\n" + combiner.format(n=2), 1)
    cell(
        "@map\ndef words(line):\n    yield line, 1\n"
        "@reduce(combiner=add_up)\ndef total(key, values):\n    yield key, sum(values)\n"
        "@job(partitions=1)\ndef counted():\n    return [words, total]\n",
        2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace["counted"].run(["raw://a"], mode="inline")
    cell(combiner.format(n=1), 3)
    with pytest.warns(RedefinedStageWarning) as got:
        namespace["counted"].run(["raw://a"], mode="inline")
    assert str(got[0].message) == (
        "job 'counted' runs stage 'total' with its combiner 'add_up' as it was when the stage "
        "was declared, but 'add_up' has been defined again since (its cell run again?): "
        "declare the stage and the job again (run their cells) to use the new one"
    )
    assert got[0].filename == __file__


def test_a_script_that_gives_each_stage_its_own_hook_of_one_name_is_not_warned() -> None:
    # Each stage's `def init(params)` written just before it: the second rebinds the name,
    # and every run warned that the first stage's init was "defined again since" (probe
    # CR F3, a regression).
    namespace: dict[str, Any] = {}
    exec(
        "from discodsl import job, map\n"
        "def init(params):\n    pass\n"
        "@map(init=init)\ndef first(line):\n    yield line, 1\n"
        "def init(params):\n    pass\n"
        "@map(init=init)\ndef second(pair):\n    yield pair\n"
        "@job(partitions=None)\ndef pipeline():\n    return [first, second]\n"
        "def init(params):\n    pass\n",  # and once more, for another job
        namespace,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(namespace["pipeline"].run(["raw://a"], mode="inline")) == [("a", 1)]


def test_a_notebooks_stages_of_other_cells_each_with_its_own_hook_of_one_name_are_not_warned() -> (
    None
):
    # Two cells each define `init` for their own stage: a job of the first stage was warned
    # that its init was "defined again since" (probe CS F4, a regression).
    namespace: dict[str, Any] = {}

    def cell(source: str, number: int) -> None:  # each cell run compiled as a file of its own
        exec(compile(source, f"/tmp/ipykernel_1/{number}.py", "exec"), namespace)

    cell("from discodsl import job, map\n", 1)
    cell("def init(params):\n    pass\n@map(init=init)\ndef first(line):\n    yield line, 1\n", 2)
    cell("def init(params):\n    pass\n@map(init=init)\ndef second(line):\n    yield line, 2\n", 3)
    cell("@job(partitions=None)\ndef only_first():\n    return [first]\n", 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(namespace["only_first"].run(["raw://a"], mode="inline")) == [("a", 1)]


class _FailingProxy:
    """A lazy proxy whose class cannot be asked for (an app's context missing)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("Working outside of application context.")


def test_a_namespace_holding_a_failing_proxy_does_not_fail_the_warnings_look() -> None:
    # Its isinstance() ran the proxy's loader, and its failure failed the run (probe CW
    # F22, a regression).
    namespace: dict[str, Any] = {"current_app": _FailingProxy()}

    def cell(source: str, number: int) -> None:
        exec(compile(source, f"<ipython-input-{number}>", "exec"), namespace)

    cell("from discodsl import job, map\ndef init(params):\n    pass\n", 1)
    cell("@map(init=init)\ndef first(line):\n    yield line, 1\n", 2)
    cell("@job(partitions=None)\ndef only_first():\n    return [first]\n", 3)
    cell("def init(params):\n    pass\n", 4)
    with pytest.warns(RedefinedStageWarning):
        assert list(namespace["only_first"].run(["raw://a"], mode="inline")) == [("a", 1)]


def test_a_script_of_two_jobs_each_with_its_own_stage_of_one_name_is_not_warned(
    tmp_path: Path,
) -> None:
    # The second `parse` rebinds the name: the first job was warned its stage was "defined
    # again since (its cell run again?)" (probe CS F18).
    script = tmp_path / "script.py"
    script.write_text(
        "import warnings\n"
        "from discodsl import job, map\n"
        "warnings.simplefilter('error')\n"
        "@map\ndef parse(line):\n    yield line, 1\n"
        "@job(partitions=None)\ndef csv_job():\n    return [parse]\n"
        "@map\ndef parse(line):\n    yield line, 2\n"
        "@job(partitions=None)\ndef json_job():\n    return [parse]\n"
        "print(list(csv_job.run(['raw://a'], mode='inline')))\n"
        "print(list(json_job.run(['raw://a'], mode='inline')))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.stdout == "[('a', 1)]\n[('a', 2)]\n", done.stderr


def test_a_hook_of_a_module_reloaded_since_its_stage_was_declared_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # importlib.reload of the hooks' module: the stage ran the old hook without a word
    # (probe CS F11, a regression).
    module = tmp_path / "reloaded_hooks.py"
    source = "def done(params):\n    return [('v', {n})]\n"
    module.write_text(source.format(n=1))
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = importlib.import_module("reloaded_hooks")
    monkeypatch.setitem(sys.modules, "reloaded_hooks", imported)
    namespace: dict[str, Any] = {"hooks": imported}
    exec(
        "from discodsl import job, map\n"
        "@map(done=hooks.done)\ndef words(line):\n    yield line, 1\n"
        "@job(partitions=None)\ndef counted():\n    return [words]\n",
        namespace,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace["counted"].run(["raw://a"], mode="inline")
    module.write_text(source.format(n=2) + "# edited\n")
    importlib.reload(imported)
    with pytest.warns(RedefinedStageWarning) as got:
        namespace["counted"].run(["raw://a"], mode="inline")
    said = str(got[0].message)
    assert "with its done 'done' as it was when the stage was declared" in said
    assert "module 'reloaded_hooks' has been reloaded since" in said and "cell" not in said


def test_a_job_of_stages_a_factory_made_does_not_warn_of_a_global_of_their_name() -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from discodsl import job, map\n"
        "def make(n):\n"
        "    @map\n"
        "    def words(line):\n"
        "        yield line, n\n"
        "    return words\n"
        "words = make(1)\n"
        "@job(partitions=None)\n"
        "def tens():\n"
        "    return [make(10)]\n",
        namespace,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(namespace["tens"].run(["raw://a"], mode="inline")) == [("a", 10)]


def test_a_job_decorated_again_or_given_a_wrapped_stage_is_told_the_fix() -> None:
    with pytest.raises(JobError, match=re.escape("not the job '_counting' itself: for other")):
        job(_counting)

    def logged(function: Any) -> Any:
        @functools.wraps(function)
        def wrapper(*args: Any) -> Any:
            return function(*args)

        return wrapper

    wrapped = logged(words)
    with pytest.raises(JobError, match=re.escape("put the other decorator below @map")):
        job(lambda: [wrapped])


class _Counting:
    def words(self, line: str) -> Iterator[tuple[str, int]]:
        yield line, 1


def _by_count(word: str, n: int) -> Iterator[tuple[int, str]]:
    yield n, word


@pytest.mark.parametrize(
    ("declare", "words"),
    [
        # @job stacked on a stage: an AttributeError raised while the error was worded.
        (lambda: job(words), "not the map stage 'words' itself: declare the job apart"),
        # A method: renaming `line` to `params`, as the hint said, made a wrong stage.
        (lambda: map(_Counting.words), "takes (self, line): a method, but a stage is a plain"),
        # A map over an earlier job's pairs, written with two parameters.
        (lambda: map(_by_count), "take the pair whole, `def _by_count(record): word, n ="),
        (lambda: reduce(combiner=True)(total.function), "combine=True)"),
        (lambda: job(partition=4)(lambda: []), "for how many, partitions=N"),
    ],
)
def test_newcomers_mistakes_are_told_the_fix_that_fits(declare: Any, words: str) -> None:
    with pytest.raises((JobError, SettingsError), match=re.escape(words)):
        declare()


def test_a_job_body_may_be_a_partial_or_a_callable_object() -> None:
    # A partial raised a bare AttributeError ('functools.partial' object has no '__name__').
    def pipeline(last: Any) -> list[Any]:
        return [words, last]

    class Pipeline:
        def __call__(self) -> list[Any]:
            return [words, total]

    assert job(functools.partial(pipeline, total)).name == "pipeline"
    assert job(Pipeline()).name == "Pipeline"


def test_a_keyword_only_parameter_is_shown_as_written() -> None:
    # "map 'by_kw' takes () but a map is called with (record[, params])": def by_kw(*, line).
    def by_kw(*, line: str) -> Any:
        yield line, 1

    with pytest.raises(JobError) as caught:
        map(by_kw)
    assert "takes (*, line)" in str(caught.value), str(caught.value)


def test_a_refused_stages_defaults_are_not_shown() -> None:
    # (a, b, c, table=[0, 1, 2, ... 299999]): a message of 2.3 MB, and a default token shown.
    table = tuple(range(300_000))

    def h(a: Any, b: Any, c: Any, table: Any = table, token: str = "s3cr3t") -> Any:
        yield a, 1

    with pytest.raises(JobError) as caught:
        map(h)
    said = str(caught.value)
    assert "takes (a, b, c, table=..., token=...)" in said and len(said) < 1000, said[:300]


def test_jobs_whose_params_have_no_plain_equality_compare_hash_and_are_found() -> None:
    # params={"w": numpy.array([1, 2])} ran, but ==, a set of jobs, `in` and index() raised
    # "the truth value of an array ... is ambiguous" from the dataclass's own __eq__.
    class Ambiguous:
        def __eq__(self, other: object) -> bool:
            raise ValueError("the truth value of an array is ambiguous")

        __hash__ = object.__hash__

    weights = {"w": Ambiguous()}

    @job(params=weights)
    def first() -> list[Any]:
        return [map(lambda line: [(line, 1)])]

    same, other = first.with_options(params=weights), first.with_options(params={"w": Ambiguous()})
    assert first == same and first != other
    assert {first, same, other} == {first, other}
    assert other in [first, other] and [first, other].index(other) == 1


def test_a_programs_file_beside_the_venv_is_the_programs() -> None:
    # A program in /x/venvproj beside the venv /x/venv was taken for a library, its helper's
    # hash() not followed (probe DQ F3).
    import sysconfig

    from discodsl import hash_calls

    beside = sys.prefix.rstrip("/") + "proj/helpers.py"
    assert hash_calls._programs_file(beside)
    assert not hash_calls._programs_file(os.path.join(sysconfig.get_path("stdlib"), "os.py"))
    assert not hash_calls._programs_file(inspect.getfile(default_partition))  # discodsl's
