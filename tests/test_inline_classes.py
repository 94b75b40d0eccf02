"""An inline run leaves the classes of the user's modules as they were."""

from __future__ import annotations

import pytest

from tests import inline_class_jobs as jobs

INPUT = ["raw://ab\nac\nbd"]


def test_an_inline_run_leaves_a_class_it_ships_by_value_as_it_was() -> None:
    """Each inline task unpickles its copy of the job in this process, and cloudpickle set
    the state the class was shipped with on the class itself: its methods replaced by
    copies holding copies of their globals, which a change to a global then missed."""
    methods = dict(vars(jobs.Hit))
    assert sorted(jobs.earliest_hits.run(INPUT, mode="inline")) == [("a", "ab!"), ("b", "bd!")]
    assert all(vars(jobs.Hit)[name] is method for name, method in methods.items())
    jobs.SUFFIX["text"] = "?"
    try:
        assert jobs.Hit("x").shown() == "x?"
    finally:
        jobs.SUFFIX["text"] = "!"


@pytest.mark.parametrize("mode", ["inline", "local"])
def test_a_second_identical_run_of_a_job_holding_a_class_is_served_from_the_cache(
    mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Inline, the first run changed the class (pickling its records cached __slotnames__ on
    it, and its methods were replaced): the second run's key differed, and it ran again."""
    first = jobs.visited_pages.run(INPUT, mode=mode, cache=True)
    capfd.readouterr()
    again = jobs.visited_pages.run(INPUT, mode=mode, cache=True)
    assert sorted(again) == sorted(first) == [("a", "ab,ac"), ("b", "bd")]
    assert "discodsl: cached results of job 'visited_pages'" in capfd.readouterr().err
