"""Prompt templates as package files, rendered by pure functions.

Templates (this directory): teacher (+ system), referee (+ system, + repair), generate_hard, generate_easy
(+ generator_system) and the student formats (lion — the original's, alpaca, compact; each with an
`_input` variant; chat — the user's turn alone, which the checkpoint's chat template wraps). They follow
the original scripts' contracts in our own words. Placeholders are `{name}`; values are inserted
verbatim (braces in an instruction are safe). `parse_rendered` inverts a rendering, which the offline
world uses to read the role a request plays.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Literal

from lion_core.chat import Messages

Mode = Literal["hard", "easy"]


@cache
def template(name: str) -> str:
    """The text of a template file (without the .txt suffix)."""
    try:
        return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyError(f"no prompt template {name!r} in lion_core/prompts") from None


def render(name: str, **values: str) -> str:
    """Fill a template; every placeholder must be given."""
    return template(name).format(**values)


def teacher_messages(instruction: str, input: str = "") -> Messages:
    """System prompt + '### Instruction / ### Input / ### Response' user message."""
    user = (
        render("teacher_input", instruction=instruction, input=input)
        if input
        else render("teacher", instruction=instruction)
    )
    return [
        {"role": "system", "content": template("teacher_system").strip()},
        {"role": "user", "content": user.rstrip()},
    ]


def referee_messages(instruction: str, answer_1: str, answer_2: str) -> Messages:
    """The referee's request: instruction, Assistant 1 and 2 answers, the score-line contract."""
    user = render("referee", instruction=instruction, answer_1=answer_1, answer_2=answer_2)
    return [
        {"role": "system", "content": template("referee_system").strip()},
        {"role": "user", "content": user.rstrip()},
    ]


def referee_repair_messages(messages: Messages, bad_reply: str) -> Messages:
    """The referee's conversation continued after `bad_reply` (no score lines) with a request to repair it.

    A follow-up turn rather than the same request again: a referee at temperature 0 would repeat itself.
    """
    return [
        *messages,
        {"role": "assistant", "content": bad_reply},
        {"role": "user", "content": template("referee_repair").strip()},
    ]


def generator_messages(mode: Mode, given: str) -> Messages:
    """The Instruction Creator's request for a hard (same task type) or easy (rarer) new instruction.

    As the original: a generic system prompt, and the given instruction alone (never its input).
    """
    return [
        {"role": "system", "content": template("generator_system").strip()},
        {"role": "user", "content": render(f"generate_{mode}", instruction=given).rstrip()},
    ]


def student_prompt(style: str, instruction: str, input: str = "") -> str:
    """The student's prompt text (the response follows it directly)."""
    name = f"student_{style}_input" if input else f"student_{style}"
    return render(name, instruction=instruction, input=input)


@cache
def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template(name).rstrip())
    regex = "".join(f"(?P<{p}>.*?)" if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(rf"^{regex}$", re.DOTALL)


def parse_rendered(name: str, text: str) -> dict[str, str] | None:
    """The placeholder values of `text` if it is a rendering of template `name` (else None)."""
    match = _pattern(name).match(text.rstrip())
    return match.groupdict() if match else None
