"""Text the database cannot store, found before it gets there.

PostgreSQL refuses a NUL character in text, and no database (nor UTF-8) can hold a lone surrogate: a
Python string can carry both (JSON's `\\u0000` and `\\ud800` escapes, YAML's `\\0`, the undecodable bytes
of an environment variable or a command argument), and left alone they end in a 500 on PostgreSQL (a lone
surrogate on SQLite too). `text_problem` names what is wrong with a text, so that every way in (the
gateway's request parsing, pages' forms and fields, config import, command arguments) refuses it with a
400 or an error that says so, the same on both databases; `storable` cleans what is recorded rather than
refused (a provider's error message in the ledger).
"""

import argparse
import re
from typing import Any

from django.http import HttpRequest

_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str, *, nul: bool = True) -> str | None:
    """What in `value` cannot be stored ("a NUL character", "a lone surrogate (U+D800)"), or None.

    A well-formed surrogate pair never reaches Python as two halves (json and YAML join them), so any
    surrogate left in a string is a lone one. `nul=False` lets NUL through, for text that is only passed on.
    """
    if nul and _NUL in value:
        return "a NUL character"
    if match := _SURROGATE.search(value):
        return f"a lone surrogate (U+{ord(match.group()):04X})"
    return None


def storable(value: str) -> str:
    """`value` with each NUL and lone surrogate replaced by U+FFFD, for text that is recorded, not refused: a
    provider's error message goes into the ledger, and the call's record must not be lost for its sake."""
    return _UNSTORABLE.sub("\ufffd", value)


def storable_argument(value: str) -> str:
    """A command-line argument's `type`: Python decodes undecodable bytes of argv as lone surrogates, which
    would fail the command when it looks the text up or stores it, rather than say what is wrong."""
    if problem := text_problem(value):
        raise argparse.ArgumentTypeError(f"contains {problem}, which cannot be stored")
    return value


def first_text_problem(value: Any, path: tuple[str | int, ...] = (), *,
                       nul: bool = True) -> tuple[tuple[str | int, ...], str] | None:
    """The first string in a parsed JSON or YAML document (keys included) that cannot be stored: its path
    and its problem."""
    if isinstance(value, str):
        problem = text_problem(value, nul=nul)
        return (path, problem) if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_text_problem(key, (*path, key), nul=nul) or first_text_problem(item, (*path, key), nul=nul)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := first_text_problem(item, (*path, index), nul=nul):
                return found
    return None


def request_text_problem(request: HttpRequest) -> tuple[str, str] | None:
    """Where in a page request's address, query or form fields is text that cannot be stored, and what."""
    if problem := text_problem(request.path_info):
        return "The address", problem
    for fields in (request.GET, request.POST):
        for name, values in fields.lists():
            # repr() escapes NUL and surrogates, so the answer can be encoded and the name read.
            for text in (name, *values):
                if problem := text_problem(text):
                    return f"The field {name!r}", problem
    return None
