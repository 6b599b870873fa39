"""What the application's one-line messages share."""

from __future__ import annotations

import shlex
from typing import Optional

__all__ = ["command_line", "first_line"]


def command_line(*words) -> str:
    """A command for the user to run next, each word quoted for a POSIX shell (paths with spaces).

    >>> command_line("keras-recu", "convert", "runs/my run", "--verify")
    "keras-recu convert 'runs/my run' --verify"
    """
    return " ".join(shlex.quote(str(word)) for word in words)


def first_line(error: BaseException, limit: Optional[int] = None) -> str:
    """The first line of `error`'s message, cut to `limit` characters; "" if it has none.

    Keras, TensorFlow and torch errors run over many lines (a traceback of
    the graph, a list of candidates); the job reports each failure in one
    line that quotes the cause's first.

    >>> first_line(ValueError("bad shape\\nat layer conv1"))
    'bad shape'
    >>> first_line(KeyError()), first_line(OSError("x" * 500), limit=3)
    ('', 'xxx')
    """
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else ""
