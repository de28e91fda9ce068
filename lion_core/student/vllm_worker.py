"""The student's vLLM engine as a process of its own: one request file in, one answers file out, exit.

Run by `lion_core.student.engine` (never by hand) as

    PYTHON -I lion_core/student/vllm_worker.py REQUEST.json

where PYTHON is `student.vllm.python`: any interpreter with vLLM installed, typically a virtual
environment of its own (vLLM's pins cannot live beside Prefect's). This file therefore imports the
standard library and vLLM only — never lion_core, which that environment does not have. `-I` keeps this
folder (whose `data.py`, `train.py`, … would shadow other modules) off `sys.path`.

The request (JSON) holds the engine's arguments, the prompts as token ids (tokenized by the caller exactly
as the transformers backend does), one seed per prompt and the decoding settings. Answers are appended to
the request's `out` file as JSON lines {"index": i, "text": …, "tokens": n generated}, one chunk of
prompts at a time, so the
caller can follow the progress; the engine ends with this process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def sampling_params(decoding: dict[str, Any], seeds: list[int]) -> list[Any]:
    """One SamplingParams per prompt: the same decoding settings, each prompt its own seed."""
    from vllm import SamplingParams

    return [SamplingParams(**decoding, seed=seed) for seed in seeds]


def lora_request(lora: dict[str, str] | None) -> Any:
    """The adapter every prompt is answered with (None: full or merged weights)."""
    if lora is None:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest("student", 1, lora["path"])


def run(request: dict[str, Any]) -> None:
    """Start the engine, answer every prompt chunk by chunk, append the answers to request['out']."""
    from vllm import LLM

    engine = LLM(**request["engine"])
    prompts, seeds, chunk = request["prompt_ids"], request["seeds"], request["chunk_size"]
    adapter = lora_request(request.get("lora"))
    with Path(request["out"]).open("a", encoding="utf-8") as out:
        for start in range(0, len(prompts), chunk):
            ids = prompts[start : start + chunk]
            params = sampling_params(request["decoding"], seeds[start : start + chunk])
            replies = engine.generate(
                [{"prompt_token_ids": p} for p in ids], params, use_tqdm=False, lora_request=adapter
            )
            for offset, reply in enumerate(replies):
                output = reply.outputs[0]
                line = {"index": start + offset, "text": output.text, "tokens": len(output.token_ids)}
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: vllm_worker.py REQUEST.json", file=sys.stderr)
        return 2
    run(json.loads(Path(argv[1]).read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
