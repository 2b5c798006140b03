"""Secrets that sit alone in a command line, where no pattern can see them.

`aws configure set aws_secret_access_key X`, `mysql --password X`, `gh auth login --with-token X`:
the secret is an argv element of its own, and `redact_obj` judges each string alone, so `X` (a
random-looking word) passes. Each element is judged here as the value of the one before it, the
way `redact_obj` judges `{"aws_secret_access_key": X}`.

The tracer applies it to every command line before it is stored (`exec` argv, the session's launch
command), in its `lenient` form: a value that reads as a path, a file name, a lower-case word or
prose is kept, so `grep -rn token src` stays readable. The security export applies the strict form
(every value after a secret's name goes) to the whole record on its way out.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from agenttrail.redact import redact_obj

_BARE_WORD = re.compile(r"[^\s;|&<>()'\"]+")
_FILE_OR_WORD = re.compile(r"[a-z][a-z_\-]*|[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+")


def _plainly_not_a_secret(value: str) -> bool:
    """A search root, a file, a word or a sentence: what follows `grep token`, not `--token`."""
    return (
        value in (".", "..")
        or value.startswith(("/", "./", "../", "~"))
        or value.endswith("/")
        or any(c.isspace() for c in value)
        or bool(_FILE_OR_WORD.fullmatch(value))
    )


def _words(script: str) -> list[str]:
    lex = shlex.shlex(script, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        return list(lex)
    except ValueError:  # an unclosed quote: the words between quotes, blanks and shell operators
        return _BARE_WORD.findall(script)


def _redact_pairs(words: list[str], lenient: bool) -> list[str]:
    out = list(words)
    for i in range(1, len(out)):
        before, value = out[i - 1], out[i]
        name = before.lstrip("-")
        if not name or "=" in before or value.startswith("-") or (lenient and _plainly_not_a_secret(value)):
            continue
        out[i] = redact_obj({name: value})[name]
    return out


def redact_argv(argv: Sequence[str], *, lenient: bool = False) -> list[str]:
    """argv with each element after a secret's name (`--token`, `aws_secret_access_key`) redacted; in
    an element that is itself a command line (`bash -c '… --password X …'`), the same for its words."""
    out = _redact_pairs([str(a) for a in argv], lenient)
    for i, element in enumerate(out):
        if not any(c.isspace() for c in element):
            continue
        words = _words(element)
        for word, redacted in zip(words, _redact_pairs(words, lenient), strict=True):
            if redacted != word and len(word) >= 4:
                element = element.replace(word, redacted)
        out[i] = element
    return out
