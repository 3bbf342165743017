"""WikiText ``.tokens`` files → documents (articles or paragraphs).

WikiText marks an article with `` = Title = `` (sections use more ``=``),
separates paragraphs with blank lines, and splits numbers with the joiners
`` @-@ ``, `` @,@ `` and `` @.@ ``. Reading undoes the joiners and turns the
file back into plain documents; tokenising and packing happen afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from zoo_datasets.errors import DatasetError

_JOINERS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_HEADING = re.compile(r"^(=+) (.*?) \1$")


def detokenize(line: str) -> str:
    """One WikiText line as plain text: joiners undone, outer spaces removed."""
    for joiner, char in _JOINERS:
        line = line.replace(joiner, char)
    return line.strip()


def heading_level(line: str) -> int:
    """1 for `` = Title = ``, 2 for `` = = Section = = ``..., 0 for other lines."""
    match = _HEADING.match(line.strip())
    if not match:
        return 0
    marks = match.group(1)
    inner = match.group(2)
    # "= = Section = =" is written with spaces between the marks.
    level = len(marks)
    while inner.startswith("= ") and inner.endswith(" ="):
        inner = inner[2:-2]
        level += 1
    return level


def _heading_text(line: str) -> tuple[int, str]:
    level = heading_level(line)
    inner = line.strip()[level * 2 : -level * 2].strip() if level else line
    return level, detokenize(inner)


def read_wikitext(path: str | Path, documents: str = "article") -> Iterator[str]:
    """Yield the documents of one ``.tokens`` file.

    ``documents="article"``: one document per `` = Title = `` article, with the
    title as its first line and section headings as ``== Section ==`` lines.
    ``documents="paragraph"``: one document per paragraph, headings dropped
    (what the seed's ``llama_preprocess.py`` trains on).
    """
    if documents not in ("article", "paragraph"):
        raise DatasetError(path, f"unknown documents mode {documents!r}; allowed: article, paragraph")
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(p, "file does not exist") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(p, f"not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise DatasetError(p, "file is empty; expected WikiText lines such as ' = Title = '")
    article: list[str] = []
    found = False
    for line in text.splitlines():
        if not line.strip():
            continue  # paragraphs are one line each; blank lines only separate them
        level, heading = _heading_text(line)
        if documents == "paragraph":
            if level == 0:
                found = True
                yield detokenize(line)
            continue
        if level == 1:
            if article:
                found = True
                yield "\n\n".join(article)
            article = [heading]
        elif level > 1:
            article.append(f"{'=' * level} {heading} {'=' * level}")
        else:
            article.append(detokenize(line))
    if article:
        found = True
        yield "\n\n".join(article)
    if not found:
        raise DatasetError(p, "no paragraphs found; is this a WikiText .tokens file?")


def read(path: str | Path, documents: str = "article") -> Iterator[str]:
    """Documents of a ``.tokens`` file, or of every ``*.tokens`` file in a folder (sorted)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.tokens"))
        if not files:
            raise DatasetError(p, "folder holds no *.tokens files")
        for file in files:
            yield from read_wikitext(file, documents)
    else:
        yield from read_wikitext(p, documents)
