"""The offline demo: the world server plays the three roles and the tiny student learns.

Run as:  lion demo --iterations 3 --run-dir runs/demo

Everything the demo needs is made locally and kept in the run directory: the tiny student
(RUN/tiny-student), the seed pool (RUN/seed.jsonl) and a disjoint held-out set (RUN/heldout.jsonl).
The world server listens on 127.0.0.1:8765, or on a free port when that one is taken (another demo, a
test); its replies are cached under the world's identity (seed and role settings, `world_identity`), not
its address, so a re-run on any port hits the response cache.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from random import Random

from lion_core.config import LionConfig, WorldConfig, load_config
from lion_core.records import Instruction, write_jsonl
from lion_core.run.rundir import RunDir
from lion_core.world.evaluation import write_world_set
from lion_core.world.families import sample_tasks
from lion_core.world.roles import RoleSettings
from lion_core.world.server import WorldServer
from lion_core.world.student import TinyStudentSpec, build_tiny_student

DEMO_CONFIG = resources.files("lion_core.world").joinpath("demo.yaml")
HELDOUT_SEED_OFFSET = 1_000_003  # a separate random stream for the held-out set
DEFAULT_PORT = 8765


def world_identity(world: WorldConfig) -> str:
    """What the world's replies depend on (its seed and role settings; not its port, nor its latency):
    the demo endpoints' `cache_identity`."""
    settings = {
        "seed": world.seed,
        "referee_bias": world.referee_bias,
        "referee_noise": world.referee_noise,
        "near_duplicate_share": world.near_duplicate_share,
        "malformed_share": world.malformed_share,
    }
    return "world:" + ",".join(f"{name}={value}" for name, value in settings.items())


def demo_config(run_dir: Path, iterations: int, seed: int, port: int, base: Path | None = None) -> LionConfig:
    """The packaged demo config, pointed at this run directory and a world server on `port` (cached
    under the world's identity, whatever the port)."""
    config = load_config(Path(str(base or DEMO_CONFIG)))
    url = f"http://127.0.0.1:{port}/v1"
    data = config.model_dump()
    for role in ("teacher", "referee", "generator"):
        data[role]["base_url"] = url
    if data["evaluation"]["judge"] is not None:
        data["evaluation"]["judge"]["base_url"] = url
    run = RunDir(run_dir)
    data["run_dir"] = run_dir
    data["student"]["model_path"] = run.demo_student
    data["pools"]["seed_path"] = run.demo_seed
    data["evaluation"]["heldout_path"] = run.demo_heldout
    data["loop"]["iterations"] = iterations
    data["loop"]["seed"] = seed
    data["world"]["seed"] = seed
    identity = world_identity(WorldConfig.model_validate(data["world"]))
    for endpoint in (data[role] for role in ("teacher", "referee", "generator")):
        endpoint["cache_identity"] = identity
    if data["evaluation"]["judge"] is not None:
        data["evaluation"]["judge"]["cache_identity"] = identity
    return LionConfig.model_validate(data)


def prepare_world_files(config: LionConfig) -> None:
    """Tiny student, seed pool and held-out set, made once per run directory."""
    world = config.world
    assert world is not None, "the demo config needs a world section"
    if not (config.student.model_path / "config.json").exists():
        build_tiny_student(config.student.model_path, TinyStudentSpec(seed=world.seed))
    if not config.pools.seed_path.exists():
        seed_tasks = sample_tasks(world.seed_size, Random(world.seed), world.families, world.levels)
        seen = {t.instruction.lower() for t in seed_tasks}
        pool = [Instruction(id=f"seed-{i:05d}", instruction=t.instruction) for i, t in enumerate(seed_tasks)]
        draw = sample_tasks(
            world.heldout_size + len(seen),
            Random(world.seed + HELDOUT_SEED_OFFSET),
            world.families,
            world.levels,
        )
        heldout = [t for t in draw if t.instruction.lower() not in seen][: world.heldout_size]
        write_world_set(config.evaluation.heldout_path, heldout)
        write_jsonl(config.pools.seed_path, pool)


def start_world(config: LionConfig, port: int | None) -> WorldServer:
    """The world server, started on `port`; with None, on DEFAULT_PORT or, when that one is taken, on a
    free port. OSError when an explicit port is taken."""
    if port is not None:
        return world_server(config).start(port=port)
    try:
        return world_server(config).start(port=DEFAULT_PORT)
    except OSError:
        return world_server(config).start(port=0)


def world_server(config: LionConfig) -> WorldServer:
    """The world server with the config's referee and generator behaviour (not started)."""
    world = config.world
    assert world is not None
    roles = RoleSettings(
        referee_bias=world.referee_bias,
        referee_noise=world.referee_noise,
        near_duplicate_share=world.near_duplicate_share,
        malformed_share=world.malformed_share,
    )
    server = WorldServer(roles, seed=world.seed)
    server.faults.latency_ms = world.latency_ms
    return server
