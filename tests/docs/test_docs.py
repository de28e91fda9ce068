"""The docs stay honest: README.md is a front page, docs/configuration.md is what the generator renders,
every relative link and anchor resolves, and every repository path or module the docs name exists.

Each check is a function over text (so that its failure can be shown on a made-up page) applied to
README.md and docs/*.md.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from lion_cli.reference import config_reference

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
FRONT_PAGE_MAX_BYTES = 20 * 1024

# Repository folders whose paths the docs may name in backticks; anything else (RUN/..., runs/..., a
# user's data/...) is not a repository path.
REPO_ROOTS = ("lion_core", "flows", "tasks", "benchmarks", "configs", "deployments", "tests")
PATH_RE = re.compile(r"(?<![\w./-])((?:" + "|".join(REPO_ROOTS) + r")/(?:[^\s`'\"()\[\],;{}]|\{[^{}\s]*\})*)")
MODULE_RE = re.compile(r"(?<![\w./-])((?:lion_core|flows|tasks)(?:\.[A-Za-z_]\w*)+)")
FENCE_RE = re.compile(r"^(```|~~~)(.*)$")
LINK_RE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
CHECKED_FENCES = {"bash", "sh", "shell", "yaml", "python"}  # commands and code; not tables or listings


def page_id(path: Path) -> str:
    return str(path.relative_to(REPO))


# --- reading markdown ------------------------------------------------------------------------------


def split_fences(text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The prose lines (fenced blocks blanked) and the fenced blocks as (language, body)."""
    prose, blocks, fence, lang, body = [], [], None, "", []
    for line in text.splitlines():
        match = FENCE_RE.match(line.strip())
        if fence is None and match:
            fence, lang, body = match.group(1), match.group(2).strip().lower(), []
            prose.append("")
        elif fence is not None and line.strip().startswith(fence):
            blocks.append((lang, "\n".join(body)))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, blocks


CODE_SPAN_RE = re.compile(r"(`+)((?:(?!\n[ \t]*\n).)+?)\1", re.S)  # within a paragraph, maybe wrapped


def code_spans(text: str) -> list[tuple[int, str]]:
    """(offset, content) of the inline code spans of prose (a span may wrap onto the next line)."""
    return [(m.start(), m.group(2)) for m in CODE_SPAN_RE.finditer(text)]


def without_code(text: str) -> str:
    """Prose with its code spans blanked (same length, so offsets still give line numbers)."""
    return CODE_SPAN_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text, lower case, without punctuation other than - and
    _, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor of a markdown page's headings (repeats get -1, -2, ... as on GitHub)."""
    prose, _ = split_fences(text)
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_slug(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


# --- the checks ------------------------------------------------------------------------------------


def broken_links(page: Path, text: str) -> list[str]:
    """Relative links of a page that do not resolve: a missing file, a path outside the repository, or an
    #anchor that is not a heading of the markdown file it points into."""
    prose = "\n".join(split_fences(text)[0])
    broken = []
    for match in LINK_RE.finditer(without_code(prose)):
        number, target = line_of(prose, match.start()), match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:, file:
            continue
        path_part, _, anchor = target.partition("#")
        where = f"{page_id(page)}:{number}: ({target})"
        if not path_part:  # an anchor of this page
            if anchor not in anchors(text):
                broken.append(f"{where} names no heading of {page_id(page)}")
            continue
        resolved = (page.parent / path_part).resolve()
        if REPO not in resolved.parents and resolved != REPO:
            broken.append(f"{where} leaves the repository")
        elif not resolved.exists():
            broken.append(f"{where} names a missing file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text("utf-8")):
            broken.append(f"{where} names no heading of {resolved.relative_to(REPO)}")
    return broken


def expand(path: str) -> list[str]:
    """`a/{b,c}.py` -> a/b.py, a/c.py (every brace group)."""
    parts = re.split(r"\{([^{}]*)\}", path)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def repo_paths(text: str) -> list[tuple[int, str]]:
    """(line, path) for every repository path in backticks, and in bash/yaml/python fenced blocks."""
    lines, blocks = split_fences(text)
    prose = "\n".join(lines)
    found = []
    for offset, span in code_spans(prose):
        found += [(line_of(prose, offset), m.group(1)) for m in PATH_RE.finditer(span)]
    for lang, body in blocks:
        if lang in CHECKED_FENCES:
            found += [(0, m.group(1)) for m in PATH_RE.finditer(body)]
    return found


def missing_paths(page: Path, text: str, root: Path = REPO) -> list[str]:
    """Repository paths a page names that do not exist (`file.py:name` checks the file; globs must match;
    `lion_core/…` with an ellipsis is a pattern, not a path)."""
    missing = []
    for number, raw in repo_paths(text):
        path = raw.rstrip(".:")
        if "…" in path or "..." in path or "<" in path:
            continue
        path, _, name = path.partition(":")
        name = name.lstrip(":")  # pytest node ids: tests/x.py::test_name
        for one in expand(path):
            exists = any(root.glob(one)) if any(c in one for c in "*?[") else (root / one).exists()
            if not exists:
                missing.append(f"{page_id(page)}:{number or 'code block'}: {one}")
            elif name and one.endswith(".py") and not defines((root / one).read_text("utf-8"), name):
                missing.append(f"{page_id(page)}:{number or 'code block'}: {one}:{name}")
    return missing


def module_exists(dotted: str, root: Path = REPO) -> bool:
    """`lion_core.method.loop` (a module or package), or `lion_core.method.selection.SELECTIONS` (a module
    and a name it defines)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:cut])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if not source.is_file():
            continue
        rest = parts[cut:]
        if not rest:
            return True
        return defines(source.read_text(encoding="utf-8"), rest[0])
    return False


def defines(source: str, name: str) -> bool:
    """Whether Python source defines `name` (a function, a class, or a module-level assignment)."""
    name = re.escape(name)
    return re.search(rf"^\s*(?:async\s+def|def|class)\s+{name}\b|^{name}\s*[:=]", source, re.M) is not None


def missing_modules(page: Path, text: str, root: Path = REPO) -> list[str]:
    prose = "\n".join(split_fences(text)[0])
    missing = []
    for offset, span in [*code_spans(prose), (0, without_code(prose))]:
        for match in MODULE_RE.finditer(span):
            if not module_exists(match.group(1), root):
                number = line_of(prose, offset + (match.start() if offset == 0 else 0))
                missing.append(f"{page_id(page)}:{number}: {match.group(1)}")
    return sorted(set(missing))


def front_page_problems(text: str) -> list[str]:
    problems = []
    size = len(text.encode("utf-8"))
    if size > FRONT_PAGE_MAX_BYTES:
        problems.append(f"README.md is {size} bytes; a front page is at most {FRONT_PAGE_MAX_BYTES}")
    _, blocks = split_fences(text)
    first = blocks[0][1] if blocks else ""
    for command in ("make demo", "make test"):
        if not re.search(rf"^{command}\b", first, re.M):
            problems.append(f"README.md's first code block does not show `{command}`")
    return problems


# --- the tests -------------------------------------------------------------------------------------


def test_the_configuration_reference_is_fresh() -> None:
    on_disk = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert on_disk == config_reference(), (
        "docs/configuration.md is stale (it differs from lion_cli/reference.py's rendering of "
        "lion_core/config.py): run `make docs`"
    )


def test_lion_config_reference_prints_the_reference() -> None:
    from typer.testing import CliRunner

    from lion_cli.main import app

    result = CliRunner().invoke(app, ["config-reference"])
    assert result.exit_code == 0, result.output
    assert result.output == config_reference()


def test_the_reference_has_a_row_for_every_field_of_every_section() -> None:
    from pydantic import BaseModel

    from lion_core.config import LionConfig

    reference = config_reference()
    sections = re.split(r"^## ", reference, flags=re.M)[1:]
    tables = {s.splitlines()[0].strip("`"): s for s in sections}

    def walk(model: type[BaseModel], path: str) -> None:
        table = tables[path or "Top level"]
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in table, f"{path or 'top level'}.{name} has no row"
            for inner in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    walk(inner, f"{path}.{name}" if path else name)

    walk(LionConfig, "")
    assert {"teacher.batch", "student.lora", "evaluation.judge", "world"} <= set(tables)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = broken_links(page, page.read_text(encoding="utf-8"))
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_a_front_page() -> None:
    problems = front_page_problems(README.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_repository_path_named_exists(page: Path) -> None:
    missing = missing_paths(page, page.read_text(encoding="utf-8"))
    assert not missing, "paths that are not in the repository:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_module_named_exists(page: Path) -> None:
    missing = missing_modules(page, page.read_text(encoding="utf-8"))
    assert not missing, "modules or names that do not exist:\n" + "\n".join(missing)


def test_every_docs_page_is_in_the_index() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    front = README.read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not list {page.name}"
            assert f"](docs/{page.name})" in front, f"README.md's index does not list docs/{page.name}"


def test_the_readme_projected_cost_line_is_what_the_projection_computes() -> None:
    from lion_core.config import load_config
    from lion_core.method.projection import project

    config = load_config(REPO / "configs" / "openai.yaml")
    config.pools.seed_path = REPO / "configs" / "no-such-seed-file.jsonl"  # the paper's 52,002 seeds
    projection = project(config)
    roles = ", ".join(f"{role} ${cost.usd:,.2f}" for role, cost in projection.roles.items())
    line = (
        f"projected cost of this recipe: ${projection.usd:,.2f} ({roles}; {projection.requests:,} requests "
        f"from {projection.seed_pool:,} seeds); budget.max_usd: ${config.budget.max_usd:,.2f}"
    )
    assert line in README.read_text(encoding="utf-8"), f"README.md should quote: {line}"


# --- each check can fail -----------------------------------------------------------------------------


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    page = DOCS / "made-up.md"
    text = (
        "# Title\n\n## A `code` heading: with punctuation!\n\n"
        "[ok](#title) [ok](#a-code-heading-with-punctuation)\n"
        "[ok](architecture.md#allowed-import-directions) [ok, wrapped\ntext](architecture.md#layers)\n"
        "[bad](#no-such-heading) [bad](no-such-page.md) [bad](architecture.md#no-such-heading)\n"
        "[bad](../../outside.md) [fine](https://example.com/x.md)\n\n"
        "`lion_core/method/loop.py` `lion_core/student/{data,train}.py` `lion_core/prompts/review_*.txt`\n"
        "`flows/evaluate.py:evaluate` `RUN/iter_K/student` `lion_core/…` `lion_core/loop.py`\n"
        "`lion_core/config.py:LionConfig` `lion_core/config.py:NoSuchModel`\n"
        "`benchmarks/results/nothing_*.json` `configs/{demo,nope}.yaml`\n\n"
        "`lion_core.method.loop` `lion_core.method.selection.SELECTIONS` `lion_core.loop.direct_effects`\n\n"
        "```bash\nlion run configs/missing.yaml\n```\n"
    )
    assert [b.split(": ", 1)[1] for b in broken_links(page, text)] == [
        "(#no-such-heading) names no heading of docs/made-up.md",
        "(no-such-page.md) names a missing file",
        "(architecture.md#no-such-heading) names no heading of docs/architecture.md",
        "(../../outside.md) leaves the repository",
    ]
    assert [m.rsplit(": ", 1)[1] for m in missing_paths(page, text)] == [
        "lion_core/loop.py",
        "lion_core/config.py:NoSuchModel",
        "benchmarks/results/nothing_*.json",
        "configs/nope.yaml",
        "configs/missing.yaml",
    ]
    assert [m.rsplit(": ", 1)[1] for m in missing_modules(page, text)] == ["lion_core.loop.direct_effects"]
    assert front_page_problems("# x\n\n```bash\nmake demo\nmake tests\n```\n") == [
        "README.md's first code block does not show `make test`"
    ]
    assert front_page_problems("```\nmake demo\nmake test\n```\n" + "x" * FRONT_PAGE_MAX_BYTES)
    assert github_slug("Scale: `lion run` at 2K, 10K and 52K seed pools (`make scale`)") == (
        "scale-lion-run-at-2k-10k-and-52k-seed-pools-make-scale"
    )
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def is_excerpt(part: object, whole: object) -> bool:
    """Whether every key and value of `part` is in `whole` (mappings compared key by key)."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and is_excerpt(v, whole[k]) for k, v in part.items()
        )
    return part == whole


def test_the_readme_config_excerpt_is_from_the_shipped_config() -> None:
    import yaml

    shipped = yaml.safe_load((REPO / "configs" / "openai.yaml").read_text(encoding="utf-8"))
    _, blocks = split_fences(README.read_text(encoding="utf-8"))
    excerpts = [yaml.safe_load(body) for lang, body in blocks if lang == "yaml"]
    assert excerpts, "README.md shows no excerpt of configs/openai.yaml"
    for excerpt in excerpts:
        assert is_excerpt(excerpt, shipped), (
            f"README.md's YAML is not an excerpt of configs/openai.yaml: {excerpt}"
        )
    assert not is_excerpt({"budget": {"max_usd": 1.0}}, shipped)
