"""lion_core/api/batch_format.py: the Batch API's JSONL files, both ways."""

from __future__ import annotations

import json

import pytest

from lion_core.api.batch_format import (
    BatchFormatError,
    BatchRequest,
    chunks,
    decode_result,
    encode_file,
    request_body,
)


def test_chunks_respect_requests_and_bytes_per_file() -> None:
    requests = [
        BatchRequest(f"k{i}", request_body("m", [{"role": "user", "content": "x" * 50}], {}))
        for i in range(10)
    ]
    assert [len(c) for c in chunks(requests, 4, 10**6)] == [4, 4, 2]
    line = len(encode_file(requests[:1]))
    assert [len(c) for c in chunks(requests, 100, 3 * line)] == [3, 3, 3, 1]
    with pytest.raises(BatchFormatError, match=r"over batch\.max_bytes"):
        chunks(requests, 100, line - 1)


def test_result_lines_openai_envelope_vllm_bare_and_errors() -> None:
    body = {
        "choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    ok = decode_result(
        json.dumps({"custom_id": "a", "response": {"status_code": 200, "body": body}, "error": None})
    )
    assert ok.completion is not None and (ok.completion.content, ok.completion.input_tokens) == ("hi", 3)
    bare = decode_result(json.dumps({"custom_id": "b", "response": body}))
    assert bare.completion is not None and bare.completion.output_tokens == 1
    failed = decode_result(
        json.dumps(
            {"custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "late"}}
        )
    )
    assert failed.completion is None and failed.error == "batch_expired: late"
    status = decode_result(
        json.dumps(
            {"custom_id": "d", "response": {"status_code": 400, "body": {"error": {"message": "bad"}}}}
        )
    )
    assert status.error == "HTTP 400: bad"
