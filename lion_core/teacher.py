"""The Teacher role: answer instructions through the chat client (paid once, thanks to its cache)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lion_core import prompts
from lion_core.llm import ChatClient, complete_all
from lion_core.records import Instruction, Response


async def answer_all(
    client: ChatClient, items: Sequence[Instruction], on_done: Callable[[int], None] | None = None
) -> list[Response]:
    """The teacher's response to every instruction, in input order."""
    conversations = [prompts.teacher_messages(item.instruction, item.input) for item in items]
    replies = await complete_all(client, conversations, on_done=on_done)
    return [
        Response(
            id=item.id,
            instruction=item.instruction,
            input=item.input,
            output=r.content.strip(),
            model=client.model_name,
        )
        for item, r in zip(items, replies)
    ]
