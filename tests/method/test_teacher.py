"""lion_core/method/teacher.py: answers cut by the length limit are counted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lion_core.api.cache import ResponseCache
from lion_core.api.ledger import Ledger
from lion_core.config import LionConfig
from lion_core.method import teacher
from lion_core.method.direct import build_roles
from lion_core.method.teacher import cut_answers_note
from lion_core.records import Instruction
from lion_core.world.server import WorldServer


def test_teacher_answers_cut_by_the_length_limit_are_counted(world: WorldServer, tmp_path: Path) -> None:
    config = LionConfig(teacher={"base_url": world.url, "max_tokens": 2})
    roles = build_roles(config, Ledger(), ResponseCache(tmp_path / "c.sqlite"))
    pool = [Instruction(id="a", instruction="Tell me a story"), Instruction(id="b", instruction="3 plus 1?")]
    answers = asyncio.run(teacher.answer_all(roles.teacher, pool))
    assert [a.finish_reason for a in answers] == ["length", "stop"]
    assert cut_answers_note(answers, 2) == ["1 of 2 teacher answers were cut at teacher.max_tokens=2"]
    assert cut_answers_note(answers[1:], 2) == []
