"""Errors raised on bad user input.

Every check on user data raises :class:`InputError`, whose message names the file,
the row, column, sample or gene, and what to change. The workflow scripts turn it
into a one-paragraph message without a traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message says where the problem is and how to fix it."""
