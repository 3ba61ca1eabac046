"""Project-level guards: layout, pins, no stdlib-shadowing root scripts, no Lightning outside fsq_repro/lit, no
references a user of the repository cannot follow (the import layers: tests/test_layers.py)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip().lstrip("- ").strip()
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_top_level_layout() -> None:
    for name in [
        "configs",
        "fsq_repro",
        "scripts",
        "outputs",
        "tests",
        "Makefile",
        "environment.yml",
        "README.md",
        "pyproject.toml",
        "requirements.txt",
        "requirements-extra.txt",
        ".ci/run",
        "train.py",
        "eval.py",
        "sample.py",
        "pretokenize.py",
    ]:
        assert (ROOT / name).exists(), name


def test_requirements_and_environment_yml_agree() -> None:
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    req |= _pins((ROOT / "requirements-extra.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"] if isinstance(d, str))
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == req
    assert len(req) >= 15 and "torch" in req and "lightning" in req
    assert "pytorch-lightning" not in req


def test_no_root_script_shadows_a_stdlib_module() -> None:
    stdlib = set(sys.stdlib_module_names)
    clashes = [p.name for p in ROOT.glob("*.py") if p.stem in stdlib]
    assert clashes == [], f"root scripts shadow the standard library: {clashes}"


def test_lightning_is_imported_only_in_lit_and_never_as_pytorch_lightning() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(lightning|pytorch_lightning)\b", re.M)
    for path in (ROOT / "fsq_repro").rglob("*.py"):
        text = path.read_text()
        assert "pytorch_lightning" not in text, path
        if "lit" not in path.relative_to(ROOT / "fsq_repro").parts:
            assert not pattern.search(text), f"Lightning imported outside fsq_repro/lit: {path}"


def test_modules_stay_short() -> None:
    for path in (ROOT / "fsq_repro").rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 400, f"{path} is over 400 lines"


def test_text_points_only_at_what_a_user_of_the_repository_can_follow() -> None:
    """Comments, docstrings and docs cite the paper or public code, never a document outside the repository or an
    issue tracker's number (the needles are built by concatenation so that this file does not match itself)."""
    needles = ["../" + "shared", "hyperparameters" + ".md", "reference/" + "evaluation.md", "reference/" + "uvim.md",
               "style" + ".md", "house" + " style"]  # fmt: skip
    tracker = re.compile("issue" + r" #\d+|\(" + r"#\d+\)", re.IGNORECASE)
    paths = [ROOT / "README.md", ROOT / "Makefile"]
    for folder in ["fsq_repro", "configs", "scripts", "tests", "docs"]:
        paths += [p for p in sorted((ROOT / folder).rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    hits = []
    for path in paths:
        if path.suffix not in {".py", ".yaml", ".yml", ".md", ".txt", ".toml", ".sh", ""}:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(n in line.lower() for n in needles) or tracker.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert hits == [], "references a user of the repository cannot follow:\n" + "\n".join(hits)


def test_readme_stays_short_and_names_the_test_command() -> None:
    """The README is what a new user reads first (reference material lives in docs/); CI runs its test command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250, "README.md is over 250 lines: move reference material into docs/"
    assert "make test" in readme and "make test" in (ROOT / ".ci" / "run").read_text()


# Docs that scripts write when they are first run (scripts/uvim_table2_cpu.py, scripts/tradeoff_photos.py): links to
# them are allowed before they exist.
NOT_YET_WRITTEN = {"docs/uvim_table2_cpu.md", "docs/tradeoff_photos_cpu.md"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _markdown_links(path: Path) -> list[tuple[int, str]]:
    """(line, target) of every Markdown link and image outside code blocks and code spans."""
    links, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            line = re.sub(r"`[^`]*`", "", line)
            links += [(number, m.group(1)) for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?[^)]*\)", line)]
    return links


def test_markdown_links_and_images_resolve() -> None:
    """Every relative link and image in README.md and docs/*.md names an existing file (and, for a Markdown file, an
    existing heading when it names an anchor)."""
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, target in _markdown_links(path):
            if re.match(r"https?://", target) or target.startswith("#"):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve()
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if not resolved.exists():
                if not (resolved.is_relative_to(ROOT) and resolved.relative_to(ROOT).as_posix() in NOT_YET_WRITTEN):
                    broken.append(where)
            elif anchor and resolved.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", resolved.read_text(encoding="utf-8"), re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{where} (no such heading)")
    assert broken == [], "links that do not resolve:\n" + "\n".join(broken)


def test_tradeoff_shapes_doc_writes_its_table_into_the_marked_block(tmp_path: Path) -> None:
    """``scripts/tradeoff_shapes.py --doc`` rewrites the block between the markers of docs/tradeoff-shapes.md."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tradeoff_shapes", ROOT / "scripts" / "tradeoff_shapes.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.DOC == ROOT / "docs" / "tradeoff-shapes.md"
    text = script.DOC.read_text(encoding="utf-8")
    assert text.count(script.MARK[0]) == 1 and text.count(script.MARK[1]) == 1
    copy = tmp_path / "doc.md"
    copy.write_text(text, encoding="utf-8")
    script.update_doc("| new table |\n", copy)
    updated = copy.read_text(encoding="utf-8")
    assert f"{script.MARK[0]}\n| new table |\n{script.MARK[1]}" in updated
    assert updated.split(script.MARK[0])[0] == text.split(script.MARK[0])[0]
    assert updated.split(script.MARK[1])[1] == text.split(script.MARK[1])[1]


BENCHES = [("bench_sampler.py", ["--batch", "2", "--repeats", "1"]),
           ("bench_token_cache.py", ["--images", "192", "--batch", "64"]),
           ("bench_token_cache.py", ["--images", "24", "--batch", "8", "--jpeg"]),
           ("bench_vq.py", ["--codes", "64", "--rows", "32", "--repeats", "1"]),
           ("bench_fsq.py", ["--shape", "2", "4", "--repeats", "1"]),
           ("bench_stage1_flops.py", ["--resolution", "32", "--batch", "2", "--steps", "1"]),
           ("bench_channels_last.py", ["--model", "tiny", "--resolution", "32", "--batch", "2", "--steps", "1"]),
           ("bench_uvim_decode.py", ["--batch", "2", "--seq-len", "8", "--width", "32", "--layers", "1",
                                     "--input-size", "16", "--repeats", "1"])]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args"), BENCHES, ids=[f"{s[:-3]}-{i}" for i, (s, _) in enumerate(BENCHES)])
def test_the_ratio_benchmarks_run_and_end_with_their_ratio_line(script: str, args: list[str]) -> None:
    """Smoke test at toy sizes (the numbers are measured by running the scripts, never asserted here); one test per
    script, so that parallel workers share them."""
    import subprocess

    proc = subprocess.run([sys.executable, f"scripts/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.fullmatch(r"ratio: \d+\.\d\d", proc.stdout.strip().splitlines()[-1]), proc.stdout


def test_every_cited_test_exists() -> None:
    """A ``tests/….py::test_name`` cited in docs, README, code or configs names a file and a function that exist (a
    moved or renamed test must not leave its citations dangling)."""
    cited = re.compile(r"tests/[\w/]+\.py(?:::\w+)?")
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ["fsq_repro", "configs", "scripts", "tests"]:
        paths += sorted(p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".yaml", ".md"})
    dangling = []
    for path in paths:
        for ref in sorted(set(cited.findall(path.read_text(encoding="utf-8")))):
            file, _, name = ref.partition("::")
            target = ROOT / file
            if not target.is_file() or (name and f"def {name}(" not in target.read_text(encoding="utf-8")):
                dangling.append(f"{path.relative_to(ROOT)}: {ref}")
    assert dangling == [], "citations of tests that do not exist:\n" + "\n".join(dangling)
