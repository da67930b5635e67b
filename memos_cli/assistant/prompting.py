"""Putting data into a prompt so that the data cannot pass for the prompt.

Data reaches a model inside delimited blocks: recalled memories in <memories>, piped
text in <stdin>, an exchange in <user> and <assistant>, old transcripts in <episode>.
If the data itself held "</stdin>" it could end its block early and go on as if memos
had written it. So inside a block, the "<" of anything that looks like one of these
tags (open or close, any case or spacing) becomes "&lt;": the only delimiters a model
sees are the ones memos wrote. Single values (a memory's text) are also JSON-quoted,
so a newline in them cannot start a forged entry of a listing.
"""

from __future__ import annotations

import json
import re

BLOCK_TAGS = ("memories", "stdin", "user", "assistant", "episode")
_TAG_LIKE = re.compile(rf"<(?=\s*/?\s*(?:{'|'.join(BLOCK_TAGS)})\b)", re.IGNORECASE)


def escape(text: str) -> str:
    """``text`` with every look-alike of a block delimiter defused."""
    return _TAG_LIKE.sub("&lt;", text)


def block(tag: str, text: str) -> str:
    """``text`` as data inside a ``<tag>`` block it cannot close or reopen."""
    assert tag in BLOCK_TAGS
    return f"<{tag}>\n{escape(text)}\n</{tag}>"


def quoted(text: str) -> str:
    """One value as a JSON string: quotes and newlines escaped, delimiters defused."""
    return escape(json.dumps(text, ensure_ascii=False))
