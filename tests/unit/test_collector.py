"""A task's collections skip the objects the process held before it, and nothing stays uncollected."""

from __future__ import annotations

import gc
import weakref

import pytest

from line_oa.integration.collector import collecting_young_objects_only, young_objects_only


class Node:
    """An object that can be put in a reference cycle and watched through a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref:
    """Make two nodes that refer to each other and nothing else refers to; return a weak reference."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


@pytest.fixture
def nothing_frozen():
    """Start with an empty permanent generation, as in an `airflow dags test` process (the suite's
    conftest freezes what it loaded); freeze again afterwards, as the suite expects."""
    gc.unfreeze()
    yield
    gc.freeze()


@pytest.mark.usefixtures("nothing_frozen")
def test_older_cycles_wait_for_the_end_and_the_tasks_own_are_collected_during_it():
    older = Node()
    older.other = Node()
    older.other.other = older  # a cycle that exists when the task starts
    older_ref = weakref.ref(older)
    with young_objects_only():
        assert gc.get_freeze_count() > 0
        del older
        young_ref = cycle()
        gc.collect()
        assert young_ref() is None  # the task's own garbage: collected as before
        assert older_ref() is not None  # frozen: full collections do not walk it during the task
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert older_ref() is None  # after the task it is collected: nothing stays uncollected


@pytest.mark.usefixtures("nothing_frozen")
def test_the_objects_are_put_back_when_the_task_fails():
    with pytest.raises(RuntimeError, match="the task failed"), young_objects_only():
        raise RuntimeError("the task failed")
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("nothing_frozen")
def test_a_process_that_froze_its_objects_itself_keeps_them_frozen():
    """A LocalExecutor or Celery worker freezes what it loaded before it forks: not undone by a task."""
    older = Node()
    older.other = Node()
    older.other.other = older
    older_ref = weakref.ref(older)
    gc.freeze()
    with young_objects_only():
        del older
        gc.collect()
        assert older_ref() is not None
    gc.collect()
    assert older_ref() is not None  # still in the process's own permanent generation
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
    gc.collect()
    assert older_ref() is None


@pytest.mark.usefixtures("nothing_frozen")
def test_the_task_decorator_keeps_the_callable_its_name_and_its_result():
    seen = []

    @collecting_young_objects_only
    def chunk_profiles(campaign_file: str, *, segment: dict) -> list:
        seen.append(gc.get_freeze_count())
        return [campaign_file, segment]

    assert chunk_profiles.__name__ == "chunk_profiles"
    assert chunk_profiles("a.yaml", segment={"rows": 3}) == ["a.yaml", {"rows": 3}]
    assert seen[0] > 0
    assert gc.get_freeze_count() == 0


def test_the_campaign_tasks_run_their_work_with_the_older_objects_frozen():
    """The wiring: the four task callables and the push operator's delivery are wrapped."""
    from line_oa.integration import dag_factory

    marker = collecting_young_objects_only(lambda: None).__code__
    for task in (
        dag_factory.validate,
        dag_factory.extract_segment,
        dag_factory.chunk_profiles,
        dag_factory.summarize,
    ):
        assert task.function.__code__ is marker, task.function.__name__
        assert task.function.__wrapped__.__name__ == task.function.__name__


@pytest.mark.usefixtures("nothing_frozen")
def test_the_push_operator_delivers_its_chunk_with_the_older_objects_frozen(monkeypatch):
    from line_oa.delivery.results import ChunkResult
    from line_oa.integration import operators

    from .campaign_docs import FIXTURES

    seen = []

    class Log:
        def close(self) -> None:
            seen.append(("closed", gc.get_freeze_count()))

    def deliver_chunk(**kwargs):
        seen.append(("delivering", gc.get_freeze_count()))
        return ChunkResult(chunk_index=0, sent=1)

    monkeypatch.setattr(operators, "deliver_chunk", deliver_chunk)
    monkeypatch.setattr(operators.DeliveryLog, "connect", lambda *args, **kwargs: Log())
    monkeypatch.setattr(operators.LineOAPushOperator, "_wait_out_quiet_hours", lambda *args: None)
    monkeypatch.setattr(operators.LineOAPushOperator, "_sending_options", lambda *args: {})
    operator = operators.LineOAPushOperator(
        task_id="push",
        campaign_file=str(FIXTURES / "valid" / "full_featured.yaml"),
        chunk={"index": 0, "rows": 1},
        run_id="run-1",
    )
    operator.execute(context={})
    assert seen[0][0] == "delivering"
    assert seen[0][1] > 0  # the older objects frozen while the chunk is delivered
    assert seen[1] == ("closed", 0)  # put back before the task's own bookkeeping
    assert gc.get_freeze_count() == 0
