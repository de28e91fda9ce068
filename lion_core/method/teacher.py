"""The Teacher role: answer instructions through the chat client (paid once, thanks to its cache)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lion_core import prompts
from lion_core.chat import ChatClient, complete_all
from lion_core.records import Instruction, Response


async def answer_all(
    client: ChatClient,
    items: Sequence[Instruction],
    on_done: Callable[[int], None] | None = None,
    *,
    send_inputs: bool = True,
) -> list[Response]:
    """The teacher's response to every instruction, in input order.

    `send_inputs` (config `loop.send_inputs`): the request shows the instruction's input; False sends
    the instruction alone, as the original `chatgpt_inference.py` (the Response still records the input;
    the student is then trained on the instruction alone too, as the teacher saw it).
    """
    conversations = [
        prompts.teacher_messages(item.instruction, item.input if send_inputs else "") for item in items
    ]
    replies = await complete_all(client, conversations, on_done=on_done)
    return [
        Response(
            id=item.id,
            instruction=item.instruction,
            input=item.input,
            output=r.content.strip(),
            model=client.model_name,
            finish_reason=r.finish_reason,
        )
        for item, r in zip(items, replies)
    ]


def cut_answers_note(answers: Sequence[Response], max_tokens: int) -> list[str]:
    """A note when answers were cut by the length limit (they are trained on as they are, as in the
    original; a user raises max_tokens, or filters them, knowing how many there are)."""
    cut = sum(a.finish_reason == "length" for a in answers)
    if not cut:
        return []
    return [f"{cut} of {len(answers)} teacher answers were cut at teacher.max_tokens={max_tokens}"]
