"""Probing: the fresh-sibling evidence the `fresh` and `learnable` selections decide on.

For each probed Cache Pool item the generator makes a sibling (same domain and task type, which the
student was not trained on); teacher and student answer it and the referee judges both orders — all
through the loop's injected effects, so the flow caches these calls and a re-run pays nothing.
Written to RUN/iter_K/probes.jsonl.
"""

from __future__ import annotations

from lion_core.config import LionConfig
from lion_core.method import referee
from lion_core.method.effects import Effects
from lion_core.method.generation import GenerationRequest, max_tokens_for, postfilter, variant_id
from lion_core.method.selection import Evidence, Probe, probe_sample
from lion_core.records import Instruction, Judgement, read_jsonl, write_jsonl
from lion_core.run.rundir import IterationDir, RunDir


async def judged_pairs(
    fx: Effects, config: LionConfig, folder: IterationDir, items: list[Instruction]
) -> list[Judgement]:
    """Teacher and the iteration's student answer `items` (the student through the iteration's sibling
    files); the referee judges both orders (one verdict per item)."""
    if not items:
        return []
    teacher_out = await fx.teacher(items)
    write_jsonl(folder.siblings, items)
    student_out = fx.student(folder.student, folder.siblings, folder.sibling_answers)
    shown = [referee.judged_text(i, send_inputs=config.loop.send_inputs) for i in items]
    return await fx.judge(
        [(i.id, text, t.output, s.output) for i, text, t, s in zip(items, shown, teacher_out, student_out)]
    )


def sibling_requests(config: LionConfig, k: int, items: list[Instruction]) -> list[GenerationRequest]:
    """One hard-prompt generator request per probed item (same domain and task type: a sibling), a
    variant of its own per seed, iteration and item (paid once, replayed on resume)."""
    loop = config.loop
    return [
        GenerationRequest(
            "hard",
            item,
            variant_id(loop.seed, k, "probe", item.id),
            max_tokens_for(item, loop.generator_max_tokens_per_word),
        )
        for item in items
    ]


def fresh_siblings(
    config: LionConfig, k: int, pool: list[Instruction], requests: list[GenerationRequest], replies: list
) -> list[Instruction]:
    """The usable siblings: replies that pass generation's post-filters and are not Cache Pool
    instructions (the student was trained on those)."""
    loop, known = config.loop, {i.instruction.strip().lower() for i in pool}
    siblings = []
    for request, reply in zip(requests, replies):
        text = reply.content.strip()
        if postfilter(reply, loop.min_words, loop.generator_blacklist) is None and text.lower() not in known:
            siblings.append(
                Instruction(
                    id=f"probe-{k}-{request.parent.id}",
                    instruction=text,
                    origin="hard",
                    iteration=k,
                    parent_id=request.parent.id,
                )
            )
    return siblings


async def probe(
    fx: Effects,
    config: LionConfig,
    run: RunDir,
    k: int,
    pool: list[Instruction],
    candidates: list[Instruction],
) -> None:
    """Fresh siblings of the probed Cache Pool items (drawn from `candidates`: the judged items),
    answered by teacher and student and judged in both orders, through the same effects as the rest of
    the iteration (cached, paid once); written to RUN/iter_K/probes.jsonl (`recorded_evidence` reads
    them back). A sibling equal to any Cache Pool instruction is not fresh."""
    folder = run.iteration(k)
    probed = probe_sample(candidates, config.loop.probe_sample, config.loop.seed, k)
    requests = sibling_requests(config, k, probed)
    siblings = fresh_siblings(config, k, pool, requests, await fx.generator(requests) if requests else [])
    verdicts = await judged_pairs(fx, config, folder, siblings)
    probes = [Probe(parent_id=s.parent_id, sibling=s, judgement=j) for s, j in zip(siblings, verdicts)]
    write_jsonl(folder.probes, probes)


def recorded_evidence(run: RunDir, k: int) -> Evidence:
    """Iteration k's probes with the earlier iterations' (what the probing selections decide on)."""
    return Evidence(read_jsonl(run.iteration(k).probes, Probe), earlier_probes(run, k))


def earlier_probes(run: RunDir, k: int) -> list[list[Probe]]:
    """The probes of iterations 1..k-1 that probed (oldest first)."""
    paths = [run.iteration(j).probes for j in range(1, k)]
    return [read_jsonl(path, Probe) for path in paths if path.exists()]
