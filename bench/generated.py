"""The generated tables in ``RESULTS.md``: one marked block per benchmark, rewritten in place."""

from __future__ import annotations

from pathlib import Path


def markers(tag: str) -> tuple[str, str]:
    """The comment lines that open and close the block of ``tag`` (e.g. ``bench/datagen.py``)."""
    return (f"<!-- BEGIN {tag} (generated; edit outside the markers) -->", f"<!-- END {tag} -->")


def write_block(path: Path, tag: str, block: str) -> None:
    """Replace the block of ``tag`` in ``path`` by ``block`` (which carries the markers),
    keeping everything else; append it when the file has none yet."""
    begin, end = markers(tag)
    text = path.read_text() if path.exists() else "# nopx benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
