"""The documentation holds together: README.md is a front door of at most 200 lines, every
relative link and ``#anchor`` in README.md, CHANGELOG.md and docs/ resolves (anchors as GitHub
makes them from headings), and every page under docs/ can be reached from README.md.

The commands of the docs are run by ``test_readme.py``; the tables generated from code are kept
in sync by the tests of that code (``test_io.py``: the schemas in docs/outputs.md;
``test_bad_inputs.py``: docs/failures.md; ``test_workflow_resources.py``: docs/running.md).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from conftest import REPO

README = REPO / "README.md"
PAGES = [README, REPO / "CHANGELOG.md", *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 200

#: Unicode categories GitHub keeps in a heading's anchor (letters, marks, decimal and letter
#: numbers, connector punctuation such as ``_``); everything else but ``-`` and spaces is dropped.
_KEPT = ("L", "Mn", "Mc", "Me", "Nd", "Nl", "Pc")


def heading_text(markdown: str) -> str:
    """A heading's text as rendered: link targets, code ticks and emphasis markers dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[`*]|(?<!\w)_+|_+(?!\w)", "", text).strip()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation and symbols dropped, spaces to ``-``."""
    text = heading_text(heading).lower()
    kept = [c for c in text if c in " -" or unicodedata.category(c).startswith(_KEPT)]
    return "".join(kept).replace(" ", "-")


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.DOTALL | re.MULTILINE)


def _prose(text: str) -> str:
    """The Markdown without fenced code blocks and inline code spans (links there are not links)."""
    return re.sub(r"(`+)[^`].*?\1", "", _without_code_blocks(text), flags=re.DOTALL)


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown page: its headings' (``-1``, ``-2``... for repeats) and HTML ids."""
    text = _without_code_blocks(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    found.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return found


def links(path: Path) -> list[str]:
    """The targets of every inline and reference-style link and image of a Markdown page."""
    text = _prose(path.read_text(encoding="utf-8"))
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    reference = re.findall(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", text, flags=re.MULTILINE)
    return inline + reference


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` whose file or ``#anchor`` does not exist."""
    broken = []
    for target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(f"{target}: no file {dest}")
        elif anchor:
            if dest.suffix != ".md":
                broken.append(f"{target}: an anchor into a file that is not Markdown")
            elif anchor not in anchors(dest):
                broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return broken


# --------------------------------------------------------------------------- the tests


def test_slug_follows_githubs_rules():
    assert slug("Fit speed") == "fit-speed"
    assert slug("GPU: several fits (NVIDIA H200, 2026-11-26)") == "gpu-several-fits-nvidia-h200-2026-11-26"
    assert slug("CPU: per fit (torch 2.13.0+cpu)") == "cpu-per-fit-torch-2130cpu"
    assert slug("`fits.parquet`: one row per fit") == "fitsparquet-one-row-per-fit"
    assert slug("What the run cost: the job-cost table") == "what-the-run-cost-the-job-cost-table"
    assert slug("Seeds, σ and 256² images — *why*") == "seeds-σ-and-256-images--why"
    assert slug("fit_batch and [the engine](fit-engine.md)") == "fit_batch-and-the-engine"


def test_anchors_number_repeated_headings(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n## Notes\n\n```bash\n# not a heading\n```\n\n## Notes\n\n### Notes\n")
    assert anchors(page) == {"title", "notes", "notes-1", "notes-2"}


def test_broken_links_are_found(tmp_path):
    (tmp_path / "a.md").write_text("# A\n\n## Part one\n")
    page = tmp_path / "p.md"
    page.write_text(
        "# P\n\n[ok](a.md#part-one) [self](#p) [web](https://example.org/x#y) `[code](nowhere.md)`\n"
        "[gone](b.md) [no anchor](a.md#part-two) [here](#nothing)\n\n```\n[in a block](c.md)\n```\n"
    )
    assert [b.split(":")[0] for b in broken_links(page)] == ["b.md", "a.md#part-two", "#nothing"]


def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into a page under docs/"


def test_every_relative_link_and_anchor_resolves():
    broken = {p.relative_to(REPO).as_posix(): b for p in PAGES if (b := broken_links(p))}
    assert not broken, broken


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached or page.suffix != ".md" or not page.exists():
            continue
        reached.add(page)
        for target in links(page):
            file = target.partition("#")[0]
            if file and not re.match(r"[a-z][a-z0-9+.-]*:", file):
                todo.append((page.parent / file).resolve())
    unreached = [p.relative_to(REPO).as_posix() for p in PAGES if p.resolve() not in reached]
    assert not unreached, f"pages no link from README.md leads to: {unreached}"
