"""Tables show values as they are: text from the store is never read as rich markup."""

from __future__ import annotations

import io

from agenttrail.query.output import render


def test_bracketed_values_are_shown_verbatim() -> None:
    out = io.StringIO()
    # "[/]" alone made rich raise MarkupError; "[red]" vanished from the output.
    render(["x", "y"], [("[/]", "[red]alert"), ("list[str]", "a [b] c")], "table", out=out)
    text = out.getvalue()
    for value in ("[/]", "[red]alert", "list[str]", "a [b] c"):
        assert value in text
