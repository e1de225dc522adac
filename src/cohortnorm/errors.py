"""Errors raised on bad user input.

Every check on user data raises :class:`InputError`, whose message names the file,
the row, column, sample or gene, and what to change. The workflow scripts turn it
into a one-paragraph message without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class InputError(ValueError):
    """Bad user input: the message says where the problem is and how to fix it."""


def preview(names: Iterable[object], limit: int = 5, *, quoted: bool = False) -> str:
    """The first ``limit`` names for a message, and how many there are in all.

    ``quoted`` shows each name as ``repr(str(name))`` (where spaces or odd characters
    matter, as in sample names), joined by ``" … "``; otherwise the names are shown as
    text and the count follows a comma.
    """
    names = list(names)
    if quoted:
        shown = ", ".join(repr(str(name)) for name in names[:limit])
        return shown + (f" … ({len(names)} in all)" if len(names) > limit else "")
    shown = ", ".join(map(str, names[:limit]))
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")
