"""lion_core/world/student.py: the tiny student loads like any Hugging Face checkpoint."""

from __future__ import annotations

from pathlib import Path


def test_tiny_student_round_trips_through_from_pretrained(tiny_student_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_student_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_student_path)
    text = "Q: Reverse abcd\nA: dcba"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    assert len(ids) == len(text)  # one token per character
    assert tokenizer.padding_side == "left"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tokenizer))
