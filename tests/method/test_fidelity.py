"""Fidelity to the original Lion scripts (github YJiangcm/Lion, src/).

Two kinds of test. `test_same_*`: a default that follows the original script named in the test (the
value or text is quoted from it). `test_differs_*`: one row of the README's table "Differences from the
original Lion scripts" — what we do instead, and, where there is one, the switch that gives the
original back. The README names each row's test.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from random import Random

import pytest
from rouge_score import rouge_scorer

from lion_core import prompts
from lion_core.api.client import OpenAIChatClient
from lion_core.api.ledger import Ledger
from lion_core.chat import Completion
from lion_core.config import LionConfig, LoopConfig, StudentConfig, load_config
from lion_core.evaluation.protocols import (
    parse_review_scores,
    reference_endpoint,
    reference_messages,
    review,
    review_messages,
)
from lion_core.method.discrimination import make_judgement
from lion_core.method.generation import (
    asker,
    generate,
    max_tokens_for,
    plan,
    postfilter,
    split_counts,
)
from lion_core.method.novelty import NoveltyIndex
from lion_core.method.referee import judge, judged_text, parse_scores
from lion_core.method.referee import judge_all as referee_judge_all
from lion_core.method.teacher import answer_all
from lion_core.records import Instruction, Response
from lion_core.student.data import sft_pairs, student_prompts
from tests.support.fakes import RecordingClient, fake_effects
from tests.support.paths import CONFIGS
from tests.support.world import recorded_bodies


def small_loop(n: int, **settings) -> LoopConfig:
    """The loop settings these generation tests use: n new instructions, 3 words at least, seed 0."""
    return LoopConfig(new_per_iteration=n, min_words=3, seed=0, **settings)


def item(
    i: int = 0, text: str = "Summarize the following text in one sentence.", input: str = ""
) -> Instruction:
    return Instruction(id=f"x{i}", instruction=text, input=input)


def user(messages: list[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def system(messages: list[dict[str, str]]) -> str:
    return next(m["content"] for m in messages if m["role"] == "system")


# --- defaults that follow the original --------------------------------------------------------------


def test_same_teacher_decoding_and_prompt_as_chatgpt_inference() -> None:
    config = LionConfig()
    assert (config.teacher.temperature, config.teacher.max_tokens, config.teacher.top_p) == (0.7, 1024, 1.0)
    # a role section that names only its endpoint keeps the role's defaults
    assert LionConfig(teacher={"model": "m"}).teacher.temperature == 0.7
    messages = prompts.teacher_messages("Name three primary colours.")
    assert user(messages) == "### Instruction:\nName three primary colours.\n\n### Response:"
    assert "helpful assistant" in system(messages) and "instruction" in system(messages)


def test_same_referee_decoding_and_prompt_as_chatgpt_referee() -> None:
    config = LionConfig()
    assert (config.referee.temperature, config.referee.max_tokens) == (0.2, 512)
    messages = prompts.referee_messages("Q", "A1", "A2")
    text = user(messages)
    assert text.startswith("[Instruction]\nQ\n\n[The Start of Assistant 1's Answer]\nA1\n")
    for asked in ("helpfulness", "relevance", "accuracy", "level of detail", "1 to 10", "order"):
        assert asked in text
    assert "length" not in text.lower()  # the original asks nothing about length
    assert text.endswith(
        "Evaluation evidence: <your explanation of the evaluation>\n"
        "Score of the Assistant 1: <score>\nScore of the Assistant 2: <score>"
    )
    assert "precise" in system(messages) and "quality" in system(messages)


def test_same_generator_decoding_prompt_layout_and_system_prompt_as_generate_instruction() -> None:
    config = LionConfig()
    assert (config.generator.temperature, config.generator.top_p) == (1.0, 1.0)
    for mode in ("hard", "easy"):
        messages = prompts.generator_messages(mode, "Write a haiku about rain.")
        assert system(messages) == "You are a helpful assistant."
        assert user(messages).startswith("Act as an Instruction Creator.")
        # prompt_hard.txt ends with "#Given Instruction#:" and a line break; encode_prompt adds "\n"
        tail = "#Given Instruction#:\n\nWrite a haiku about rain.\n\n#Created Instruction#:"
        assert user(messages).endswith(tail)


@pytest.mark.parametrize("mode", ["hard", "easy"])
def test_same_length_and_difficulty_clause_in_both_generator_prompts(mode: str) -> None:
    text = prompts.template(f"generate_{mode}")
    assert "The LENGTH and difficulty level of the #Created Instruction# should be similar" in text
    assert ("same type of task" in text) == (mode == "hard")
    assert ("even rarer" in text) == (mode == "easy")


def test_same_generator_token_limit_four_per_parent_word_and_cut_replies_dropped() -> None:
    parent = item(text="Write a short poem about the sea")  # 7 words
    assert LoopConfig().generator_max_tokens_per_word == 4
    assert max_tokens_for(parent, 4) == 28 and max_tokens_for(parent, None) is None
    fake = RecordingClient(lambda m: "Compose a limerick about a lighthouse keeper")
    result = asyncio.run(generate(asker(fake), [parent], [], NoveltyIndex(0.7), small_loop(1), iteration=1))
    assert [limit for _, _, limit in fake.requests] == [28]
    assert len(result.kept) == 1
    assert (
        postfilter(Completion("Compose a limerick about a", "length", 1, 28), 3) == "cut by the length limit"
    )


def test_same_generator_token_limit_reaches_the_http_request(tmp_path: Path) -> None:
    client = OpenAIChatClient("generator", LionConfig().generator, cache=None, ledger=Ledger())
    assert client.request_params(28) == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 28}
    assert client.key([{"role": "user", "content": "x"}], 0, 28) != client.key(
        [{"role": "user", "content": "x"}]
    )


def test_same_blacklist_drops_any_reply_containing_instruction() -> None:
    assert LoopConfig().generator_blacklist == ["instruction"]
    assert postfilter(Completion("Draft INSTRUCTIONS for assembling a desk", "stop", 1, 1), 3) == (
        "contains 'instruction'"
    )
    assert (
        postfilter(Completion("Draft INSTRUCTIONS for assembling a desk", "stop", 1, 1), 3, blacklist=[])
        is None
    )


def test_same_generation_loops_until_n_are_kept() -> None:
    good = iter(
        [
            "Compose a sonnet about autumn leaves falling",
            "List five uses of baking soda at home",
            "Explain why the sky looks blue at noon",
        ]
    )
    # round 1 asks 3 (keeps 1), round 2 asks 2 (keeps 1), round 3 asks 1 (keeps 0), round 4 keeps the last
    pattern = iter(["good", "bad", "bad", "good", "bad", "bad", "good"])
    fake = RecordingClient(lambda m: next(good) if next(pattern) == "good" else "Hi.")
    parents = [item(1, "Write a short story about a brave dog")]
    result = asyncio.run(generate(asker(fake), parents, [], NoveltyIndex(0.7), small_loop(3), iteration=1))
    assert len(result.kept) == 3 and result.rounds == 4  # beyond the old cap of 3 rounds
    assert LoopConfig().generation_rounds is None  # no cap on rounds by default


def test_same_parents_drawn_independently_per_request() -> None:
    parents = [item(i, f"Task {i} text here") for i in range(4)]
    requests = plan(parents, [], 4, 0, Random(1), "t")
    assert LoopConfig().parent_sampling == "uniform"
    assert len({r.parent.id for r in requests}) < 4  # independent draws repeat a parent (seeded)
    cover = plan(parents, [], 4, 0, Random(1), "t", parent_sampling="cover")
    assert len({r.parent.id for r in cover}) == 4


def test_same_student_prompt_as_train_py_prompt_dict() -> None:
    assert StudentConfig().prompt_template == "lion"
    assert prompts.student_prompt("lion", "Add 2 and 3") == "### Instruction:\nAdd 2 and 3\n\n### Response:\n"
    assert prompts.student_prompt("lion", "Add", "2 and 3") == (
        "### Instruction:\nAdd\n\n### Input:\n2 and 3\n\n### Response:\n"
    )
    assert prompts.student_prompt("alpaca", "Add 2 and 3").startswith("Below is an instruction")


def test_same_student_answers_as_lion_inference() -> None:
    # GenerationConfig(temperature=0.7, num_beams=1, do_sample=True), max_new_tokens=1024: a fresh
    # GenerationConfig's top_k 50 and top_p 1.0, sent explicitly by both backends (the checkpoint's own
    # generation_config, e.g. a Llama's top_p 0.9, is never inherited: tests/student/test_generate.py)
    student = StudentConfig()
    assert (student.do_sample, student.temperature, student.max_new_tokens) == (True, 0.7, 1024)
    assert (student.top_k, student.top_p) == (50, 1.0)


def test_same_training_recipe_as_train_py() -> None:
    s = StudentConfig()
    assert s.finetune == "full" and s.learning_rate == 2e-5 and s.epochs == 3
    assert (s.lr_scheduler, s.warmup_ratio, s.max_length, s.weight_decay) == ("cosine", 0.03, 1024, 0.0)
    assert s.train_batch_size * s.gradient_accumulation_steps == 128
    assert s.train_data == "train_pool"


def test_same_novelty_and_split_thresholds() -> None:
    loop = LoopConfig()
    assert (loop.tau, loop.rouge_threshold, loop.hard_easy_ratio, loop.min_words) == (1.0, 0.7, 1.0, 3)
    assert (loop.iterations, loop.new_per_iteration) == (3, 6000)


# --- differences from the original: one test per README row ------------------------------------------


def test_differs_inputs_reach_teacher_student_referee_and_training_unless_send_inputs_is_false() -> None:
    # the original's final scripts drop the input everywhere: chatgpt_inference.py writes no `input` key,
    # so train.py's no-input template trains on the instruction alone, as the teacher saw it
    task = item(text="Summarize the following text in one sentence.", input="The cat sat on the mat all day.")
    assert LoopConfig().send_inputs is True
    answered = [Response(id="x0", instruction=task.instruction, input=task.input, output="o", model="t")]
    for send, shown in ((True, True), (False, False)):
        fake = RecordingClient()
        answers = asyncio.run(answer_all(fake, [task], send_inputs=send))
        assert ("The cat sat" in user(fake.requests[0][0])) is shown
        assert answers[0].input == task.input  # recorded either way
        assert ("The cat sat" in student_prompts("lion", [task], send_inputs=send)[0]) is shown
        assert ("The cat sat" in judged_text(task, send_inputs=send)) is shown
        prompt = sft_pairs("lion", answered, send_inputs=send)[0].prompt
        assert ("### Input:" in prompt) is shown  # trained on what the teacher saw
        assert prompt == student_prompts("lion", [task], send_inputs=send)[0]  # and answers with


def test_differs_send_inputs_false_trains_on_the_instruction_alone_in_the_loop(tmp_path: Path) -> None:
    from lion_core.method.loop import run_iteration
    from lion_core.method.pools import initial_pools, write_pools
    from lion_core.records import read_jsonl
    from lion_core.run.rundir import RunDir

    run = RunDir(tmp_path / "run")
    seed = [item(i, f"Summarize text number {i}", input=f"Text {i} is about cats.") for i in range(4)]
    write_pools(run.iteration(1), initial_pools(seed))
    config = LionConfig(
        student={"model_path": tmp_path},
        loop={"new_per_iteration": 2, "min_words": 1, "iterations": 1, "send_inputs": False},
    )
    asyncio.run(run_iteration(fake_effects(), config, run, 1))
    rows = [json.loads(line) for line in run.iteration(1).sft.read_text().splitlines()]
    assert rows and not any("### Input:" in row["prompt"] or "cats" in row["prompt"] for row in rows)
    assert read_jsonl(run.iteration(1).file("teacher"), Response)[0].input  # the input is still recorded


def test_differs_unparseable_verdict_is_repaired_then_unscorable_never_minus_one() -> None:
    assert LoopConfig().referee_retries == 2  # two repair turns by default
    fake = RecordingClient(lambda m: "Both are fine.")
    verdict = asyncio.run(judge(fake, "x", "Q", "a", "b", tau=1.0, retries=1))
    assert verdict.label == "unscorable" and verdict.gap is None and "no scores" in verdict.reason
    assert fake.requests[1][0][-1]["content"] == prompts.template("referee_repair").strip()  # a repair turn


def test_differs_score_lines_are_read_wherever_they_are() -> None:
    # the original reads the last two lines only: a trailing remark made it [-1, -1]
    verdict = "Evaluation evidence: fine.\nScore of the Assistant 1: 8\nScore of the Assistant 2: 6"
    reply = verdict + "\n\nHope this helps!"
    assert parse_scores(reply) == (8.0, 6.0)
    assert parse_scores("Score of the Assistant 1: 11\nScore of the Assistant 2: 6") is None  # outside 1-10


def test_differs_gap_is_exact_on_decimals() -> None:
    assert 8.2 - 7.2 < 1.0  # floating point, as the original subtracts
    verdict = make_judgement("x", (8.2, 8.2), (7.2, 7.2), tau=1.0)
    assert Decimal(str(verdict.gap)) == Decimal("1.0") and verdict.label == "hard"


def _pair(m: int, n: int, lcs: int) -> tuple[str, str]:
    """Two texts of m and n distinct tokens sharing an lcs-token prefix."""
    a = " ".join(f"w{i}" for i in range(m))
    b = " ".join([f"w{i}" for i in range(lcs)] + [f"x{i}" for i in range(n - lcs)])
    return a, b


def test_differs_rouge_tie_at_the_threshold_is_always_rejected() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept_by_original = _pair(10, 10, 7)  # F1 = 14/20 = 0.7 exactly
    rejected_by_original = _pair(9, 11, 7)  # F1 = 14/20 = 0.7 exactly too
    f_kept = scorer.score(*kept_by_original)["rougeL"].fmeasure
    f_rejected = scorer.score(*rejected_by_original)["rougeL"].fmeasure
    assert f_kept == 0.7 and not f_kept > 0.7  # the original's `max(rouge_scores) > 0.7`: kept
    assert f_rejected == 0.7000000000000001 and f_rejected > 0.7  # rounded up: rejected
    for pool_text, candidate in (kept_by_original, rejected_by_original):
        assert NoveltyIndex(0.7, [pool_text]).filter([candidate]).kept == [False]  # ours: exact F1 < 0.7


def test_differs_novelty_spans_hard_and_easy_generations() -> None:
    # the original ran the hard and the easy script separately: each compared only with its own outputs
    fake = RecordingClient(lambda m: "Describe the migration routes of arctic terns in detail")
    hard, easy = [item(1, "Explain how birds navigate at night")], [item(2, "Explain how fish find food")]
    result = asyncio.run(
        generate(asker(fake), hard, easy, NoveltyIndex(0.7), small_loop(2, generation_rounds=1), iteration=1)
    )
    assert len(fake.requests) == 2 and len(result.kept) == 1 and result.novelty_rejections == 1


def test_differs_generation_stops_after_patience_rounds_that_keep_nothing() -> None:
    assert LoopConfig().generation_patience == 3
    fake = RecordingClient(lambda m: "Hi.")
    parents = [item(1, "Explain how birds navigate at night")]
    result = asyncio.run(generate(asker(fake), parents, [], NoveltyIndex(0.7), small_loop(1), iteration=1))
    assert result.rounds == 3 and any("kept nothing" in note for note in result.notes)
    # patience null (the original's endless loop) — bounded here by generation_rounds only
    loop = LoopConfig(new_per_iteration=1, generation_patience=None, generation_rounds=5)
    result = asyncio.run(generate(asker(fake), parents, [], NoveltyIndex(0.7), loop, iteration=1))
    assert result.rounds == 5


def test_differs_generator_and_referee_repair_requests_send_a_seed_and_no_logit_bias(world) -> None:
    # as sent over HTTP to the offline world server. The original sent logit_bias {"50256": -100}
    # ("<|endoftext|>" in GPT-3's vocabulary, an ordinary token in gpt-3.5-turbo's) and no seed; ours
    # send no logit bias, and each generator request and each referee repair an OpenAI `seed` (its
    # variant: a provider that honours seeds answers each sample the same whatever the order)
    bodies = recorded_bodies(world)
    config = LionConfig(**{role: {"base_url": world.url} for role in ("teacher", "referee", "generator")})

    def client(role: str) -> OpenAIChatClient:
        return OpenAIChatClient(role, getattr(config, role), cache=None, ledger=Ledger())

    parents = [item(1, "Write a short story about a brave dog")]
    asyncio.run(
        generate(asker(client("generator")), parents, [], NoveltyIndex(0.7), small_loop(2), iteration=1)
    )
    generator = [b for b in bodies if "#Created Instruction#" in b["messages"][-1]["content"]]
    assert generator and all(isinstance(b["seed"], int) and b["seed"] > 0 for b in generator)
    assert len({b["seed"] for b in generator}) == len(generator)  # a distinct sample each
    assert all(
        set(b) == {"model", "messages", "temperature", "top_p", "max_tokens", "seed"} for b in generator
    )
    bodies.clear()
    asyncio.run(answer_all(client("teacher"), [item()]))
    assert "seed" not in bodies[-1] and "logit_bias" not in bodies[-1]  # the teacher: decoding alone
    bodies.clear()
    world.faults.share_malformed = 1.0  # verdicts without scores: a repair request follows
    asyncio.run(judge(client("referee"), "x", "Q", "a", "b", tau=1.0, retries=1))
    first, repair = bodies[0], bodies[-1]
    assert "seed" not in first and repair["seed"] == 1  # the referee's repair turn carries its variant
    assert not any("logit_bias" in b for b in bodies)


def test_differs_precision_defaults_to_fp32_and_the_paper_config_trains_in_bf16() -> None:
    assert StudentConfig().precision == "fp32"
    assert load_config(CONFIGS / "paper.yaml").student.precision == "bf16"


def test_differs_the_cache_pool_is_never_re_sent_to_the_teacher(tmp_path: Path) -> None:
    # the original ran chatgpt_inference.py on the whole Cache Pool every iteration; here the teacher
    # answers each iteration's Train Pool only, and earlier answers are carried over
    from lion_core.method.loop import run_iteration
    from lion_core.method.pools import initial_pools, write_pools
    from lion_core.run.rundir import RunDir

    asked: list[list[str]] = []
    fake = fake_effects(
        f"Compose {w} verses about {t}" for w, t in zip("abcdefgh", ["rain", "snow", "fog", "sun"] * 2)
    )

    async def teacher(items: list[Instruction]) -> list[Response]:
        asked.append([i.id for i in items])
        return await fake.teacher(items)

    config = LionConfig(
        student={"model_path": tmp_path}, loop={"new_per_iteration": 2, "min_words": 1, "iterations": 2}
    )
    fx = replace(fake, teacher=teacher)
    run = RunDir(tmp_path / "run")
    seed = [item(i, f"Seed task number {i} about {t}") for i, t in enumerate(["cats", "maps", "tea", "jazz"])]
    write_pools(run.iteration(1), initial_pools(seed))
    first = asyncio.run(run_iteration(fx, config, run, 1))
    second = asyncio.run(run_iteration(fx, config, run, 2))
    assert asked[0] == [i.id for i in seed]
    assert asked[1] == [i.id for i in first.generation.kept]  # the new Train Pool only
    assert len(second.discrimination.teacher) == len(seed) + 2  # yet the whole Cache Pool is judged


def test_same_vicuna_evaluation_in_the_paper_config_with_fastchats_reference_answers() -> None:
    # fastchat/eval/qa_baseline_gpt35.py: the bare question, "You are a helpful assistant.", T 1.0, 1024
    assert LionConfig().evaluation.protocol == "lion"  # `lion eval`'s default is the referee's protocol
    assert load_config(CONFIGS / "paper.yaml").evaluation.protocol == "vicuna"
    assert reference_messages("Q?") == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Q?"},
    ]
    endpoint = reference_endpoint(LionConfig().teacher)
    assert (endpoint.temperature, endpoint.max_tokens) == (1.0, 1024)


def test_differs_identical_answers_are_not_judged_unless_skip_identical_is_false() -> None:
    # the original asks the referee about equal answers too, twice at T 0.2 (two samples whose gap can
    # be non-zero); ours records the verdict `identical` (gap 0) without a request by default
    assert LionConfig().referee.skip_identical is True
    assert load_config(CONFIGS / "paper.yaml").referee.skip_identical is False
    items = [("x", "Q", "The same answer.", " The same  answer. ")]
    for skip, requests in ((True, 0), (False, 2)):
        fake = RecordingClient(lambda m: "Score of the Assistant 1: 8\nScore of the Assistant 2: 8")
        verdict = asyncio.run(referee_judge_all(fake, items, tau=1.0, retries=2, skip_identical=skip))[0]
        assert len(fake.requests) == requests and verdict.gap == 0 and verdict.label == "easy"


def test_differs_the_final_imitation_round_is_off_by_default_and_on_in_the_paper_config() -> None:
    # the original's loop (and ours by default): 3 iterations train on 52K + 6K + 6K = 64K, the last
    # generated 6K never answered; the paper says 70K. loop.final_imitation answers and trains on them
    # (tests/method/test_loop.py runs it)
    assert LoopConfig().final_imitation is False
    assert load_config(CONFIGS / "paper.yaml").loop.final_imitation is True


def test_differs_generator_reply_filters_read_the_stripped_reply() -> None:
    # the original tests the first character of the raw reply: a leading space then a dash passed
    reply = Completion("  - Write a poem about the sea", "stop", 1, 1)
    assert postfilter(reply, 3) == "starts with punctuation"


def test_differs_a_side_without_parents_is_filled_from_the_other() -> None:
    # the original cannot run then (random.sample of an empty list raises)
    hard, easy, notes = split_counts(6000, 1.0, 0, 40)
    assert (hard, easy) == (0, 6000) and "no hard instructions" in notes[0]


def test_differs_review_prompts_in_our_words_both_orders_and_a_lenient_parser() -> None:
    # FastChat: its own system prompt and markers, the math tuple before the explanation, ONE order
    # (the baseline as Assistant 1), the first line read as "s1 s2" else [-1, -1] to fix by hand
    fastchat_system = "You are a helpful and precise assistant for checking the quality of the answer."
    messages = review_messages("Q", "A1", "A2", "math")
    assert system(messages) != fastchat_system
    assert "[The Start of Assistant 1's Answer]" not in user(messages)
    fake = RecordingClient(lambda m: "8 6\nExplanation.")
    asyncio.run(review(fake, "q", "Q", "generic", "reference", "candidate"))
    assert len(fake.requests) == 2  # both orders, averaged
    assert parse_review_scores("Assistant 1: 8/10\nAssistant 2: 6/10") == (8.0, 6.0)  # FastChat: [-1, -1]
