"""The docs stay usable from a fresh clone: a short README, links that lead somewhere, and nothing
that needs a folder outside the repository (the architecture is docs/ARCHITECTURE.md)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 300
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
OUTSIDE_DOCS = "../shared" + "/docs"  # built here so this file does not match itself


def doc_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    out, fenced = [], False
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line.strip()):
            fenced = not fenced
        elif not fenced:
            out.append((n, line))
    return out


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1, -2 for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    bad = []
    for n, line in prose_lines(path):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{n}: {target}"
            if not dest.exists():
                bad.append(f"{where} (no such file)")
            elif not dest.is_relative_to(ROOT):
                bad.append(f"{where} (outside the repository)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{where} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    return bad


def tracked_text_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
        paths = [ROOT / n for n in names if n]
    except (OSError, subprocess.SubprocessError):  # no git (e.g. an exported tree): every file but the venv's
        skip = {".git", ".venv", "runs", "node_modules", "__pycache__"}
        paths = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    out = []
    for p in paths:
        if p.is_file() and p.stat().st_size < 5_000_000:
            try:
                p.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            out.append(p)
    return out


def test_the_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, (f"README.md has {n} lines, more than {MAX_README_LINES}: move details to "
                                   "docs/ (guide.md, benchmarks.md, ...) and link to them")


def test_the_docs_exist():
    names = {p.name for p in doc_files()}
    assert {"README.md", "ARCHITECTURE.md", "benchmarks.md"} <= names


def test_relative_links_in_the_docs_lead_somewhere():
    bad = [b for p in doc_files() for b in broken_links(p)]
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_the_link_checker_sees_a_broken_link(tmp_path, monkeypatch):
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Title here\n\n[ok](#title-here) [gone](b.md) [x](a.md#nope)\n"
                                   "```\n[in code](c.md)\n```\n[web](https://example.org/x.md)\n")
    assert [b.split(": ", 1)[1] for b in broken_links(tmp_path / "a.md")] == [
        "b.md (no such file)", "a.md#nope (no heading #nope in a.md)"]


def test_no_file_depends_on_docs_outside_the_repository():
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in tracked_text_files()
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if OUTSIDE_DOCS in line]
    assert not hits, f"these refer to {OUTSIDE_DOCS} (not in a clone): point to docs/ instead:\n" + "\n".join(hits)


def empty_code_blocks(text: str) -> list[int]:
    """Line numbers of fenced code blocks with nothing but blank lines inside."""
    out, opened, content = [], None, False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            if opened is None:
                opened, content = n, False
            else:
                if not content:
                    out.append(opened)
                opened = None
        elif opened is not None and line.strip():
            content = True
    return out


def test_no_code_block_in_the_docs_is_empty():
    """A figure block left empty (a command's output never pasted) reads as a result that is not there."""
    found = [f"{p.name}:{n}" for p in doc_files() for n in empty_code_blocks(p.read_text(encoding="utf-8"))]
    assert not found, f"empty code blocks: {found}"
    assert empty_code_blocks("a\n```\nx\n```\n\n```\n\n```\n") == [6]  # the check sees one
