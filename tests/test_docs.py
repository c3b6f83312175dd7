"""The README stays a front door a new user reads in minutes, and no link in it or in docs/ is
broken. Reads Markdown text only (nothing of the project is imported), so it runs in well under
a second."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_LIMIT = 15_000

# [text](target) and ![alt](target), with an optional "title"; one level of nested brackets in
# the text covers image links such as [![alt](img)](target).
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target reference definitions.
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def links(text: str) -> list[str]:
    """Every link and image target in Markdown text, outside fenced code blocks and inline code
    (code shows paths and brackets that are not links)."""
    prose = FENCE.sub("", text)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (page.parent / path).is_file():
            broken.append(target)
    return broken


def test_the_readme_is_at_most_15000_characters():
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_LIMIT, f"README.md has {size} characters; move detail into docs/"


def test_the_readme_gives_the_two_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text


def test_there_are_docs_pages_to_link_to():
    assert DOCS, "docs/ has no Markdown pages"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_sees_links_and_skips_what_is_not_a_path(tmp_path):
    # Guards the checker itself: were its patterns to stop matching, every page would pass.
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    page.write_text(
        "[ok](there.md#part) ![img](missing.png) [web](https://example.org/x) "
        "[anchor](#top) [mail](mailto:a@b.c) `[code](nowhere.md)`\n"
        "```\n[fenced](nowhere.md)\n```\n"
        "[ref]: gone.md\n")
    assert broken_links(page) == ["missing.png", "gone.md"]
