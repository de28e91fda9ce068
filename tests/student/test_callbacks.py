"""lion_core/student/callbacks.py: the examples each optimizer step sees, as the trainer batches them, and
the stop flag turned into a stop of the trainer (the callbacks at work in a fine-tune: test_train.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from transformers import TrainerControl

from lion_core.interrupt import STOP
from lion_core.student.callbacks import StopCallback, examples_per_step


def test_examples_per_step_follow_the_trainers_batches() -> None:
    # one process: 10 examples in batches of 3 (3, 3, 3, 1), 2 batches a step
    assert examples_per_step(10, 3, 2, 1) == [6, 4]
    assert examples_per_step(64, 4, 2, 1) == [8] * 8
    # two processes: full batches on each (Accelerate completes the last ones), 2 batches of 4 a step
    assert examples_per_step(64, 4, 1, 2) == [8] * 8
    assert examples_per_step(10, 3, 1, 2) == [6, 6]  # 4 batches of 3 in all, 2 per process
    assert examples_per_step(10, 3, 4, 1) == [10]  # the last step takes the batches left


@pytest.fixture
def stop_flag() -> Iterator[None]:
    STOP.clear()
    yield
    STOP.clear()


def test_a_stop_asks_the_trainer_to_stop_at_the_next_boundary(stop_flag: None) -> None:
    stop, control = StopCallback(), TrainerControl()
    stop.on_substep_end(None, None, control)
    assert not control.should_training_stop and not stop.stopped
    STOP.set()
    stop.on_substep_end(None, None, control)
    assert control.should_training_stop and stop.stopped
