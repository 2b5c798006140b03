"""A secret alone in an argv element is judged by the element before it."""

from __future__ import annotations

from agenttrail.tracer.argv_redact import redact_argv


def test_a_value_after_a_secrets_name_is_redacted() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    for argv in (
        ["aws", "configure", "set", "aws_secret_access_key", secret],
        ["mysql", "--password", secret],
        ["gh", "auth", "login", "--with-token", secret],
    ):
        for lenient in (False, True):
            out = redact_argv(argv, lenient=lenient)
            assert secret not in out and out[:-1] == argv[:-1]


def test_the_lenient_form_keeps_what_plainly_is_not_a_secret() -> None:
    for argv in (
        ["grep", "-rn", "token", "."],
        ["grep", "-rn", "token", "src"],
        ["grep", "-r", "password", "src/"],
        ["grep", "password", "config.yaml"],
        ["rg", "secret", "/etc/app"],
        ["git", "commit", "-m", "rotate the api key"],
        ["export", "--token", "$TOKEN"],
    ):
        assert redact_argv(argv, lenient=True) == argv
    assert redact_argv(["grep", "-rn", "token", "."]) != ["grep", "-rn", "token", "."]  # the strict form


def test_a_command_line_inside_an_element_is_judged_word_by_word() -> None:
    script = "cd app && mysql --password Hunter2Secret9 -u root; grep -rn token src; echo 'done'"
    out = redact_argv(["bash", "-c", script], lenient=True)
    assert out[2] == script.replace("Hunter2Secret9", "[REDACTED:password]")
    unclosed = "mysql --password Hunter2Secret9; echo 'oops"  # shlex cannot read it; the words still can
    assert "Hunter2Secret9" not in redact_argv(["sh", "-c", unclosed], lenient=True)[2]
