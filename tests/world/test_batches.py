"""lion_core/world/batches.py: the world's Files and Batch API, through the OpenAI SDK."""

from __future__ import annotations

import json
import time

import openai

from lion_core.api.batch_format import BatchRequest, encode_file, request_body
from lion_core.world.server import WorldServer
from tests.support.world import teacher_conversations


def test_world_files_and_batches_through_the_sdk(world: WorldServer) -> None:
    sdk = openai.OpenAI(base_url=world.url, api_key="x")
    _, convs = teacher_conversations(3)
    data = encode_file(BatchRequest(f"k{i}", request_body("world", m, {})) for i, m in enumerate(convs))
    upload = sdk.files.create(file=("in.jsonl", data), purpose="batch")
    assert sdk.files.retrieve(upload.id).bytes == len(data)
    assert sdk.files.content(upload.id).content == data
    batch = sdk.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed"):
        time.sleep(0.02)
        batch = sdk.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 3
    lines = sdk.files.content(batch.output_file_id).text.splitlines()
    assert sorted(json.loads(x)["custom_id"] for x in lines) == ["k0", "k1", "k2"]
    assert [b.id for b in sdk.batches.list()] == [batch.id]
    assert world.stats.to_dict()["batches"]["created"] == 1
