"""Redaction: every known secret shape is replaced before storage, and ordinary text is left alone.

Tokens are generated here with the real formats and random bodies (none is a real secret), then
embedded in prose, JSON, shell commands, diffs and env dumps.
"""

from __future__ import annotations

import base64
import http.server
import inspect
import json
import random
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agenttrail import clock, events
from agenttrail.redact import placeholder, redact_obj, redact_text

ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
UPPER32 = string.ascii_uppercase + "234567"
HEX = "0123456789abcdef"


def rnd(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def pem(rng: random.Random, label: str, width: int = 64, headers: str = "") -> tuple[str, str]:
    body = base64.b64encode(rng.randbytes(rng.randint(300, 1200))).decode()
    lines = "\n".join(body[i : i + width] for i in range(0, len(body), width))
    block = f"-----BEGIN {label}-----\n{headers}{lines}\n-----END {label}-----"
    return block, body


def jwt(rng: random.Random) -> tuple[str, str]:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": rnd(rng, 12), "iat": rng.randint(10**9, 2 * 10**9), "scope": "repo read:org"}
    payload, sig = b64url(json.dumps(claims).encode()), b64url(rng.randbytes(32))
    return f"{head}.{payload}.{sig}", payload + sig


# kind -> generator of (token, the random part that must not survive)
Gen = Callable[[random.Random], tuple[str, str]]


def _prefixed(prefix: str, n: int, alphabet: str = ALNUM, suffix: str = "") -> Gen:
    def gen(rng: random.Random) -> tuple[str, str]:
        body = rnd(rng, n, alphabet)
        return prefix + body + suffix, body

    return gen


def _slack_bot(rng: random.Random) -> tuple[str, str]:
    body = f"{rnd(rng, 24)}"
    return f"xoxb-{rnd(rng, 12, string.digits)}-{rnd(rng, 13, string.digits)}-{body}", body


def _slack_user(rng: random.Random) -> tuple[str, str]:
    body = rnd(rng, 32, HEX)
    ids = "-".join(rnd(rng, n, string.digits) for n in (11, 12, 13))
    return f"xoxp-{ids}-{body}", body


def _slack_webhook(rng: random.Random) -> tuple[str, str]:
    body = rnd(rng, 24)
    ids = f"T{rnd(rng, 8, UPPER32)}/B{rnd(rng, 10, UPPER32)}"
    return f"https://hooks.slack.com/services/{ids}/{body}", body


def _github_pat(rng: random.Random) -> tuple[str, str]:
    body = f"{rnd(rng, 22)}_{rnd(rng, 59)}"
    return "github_pat_" + body, body


def _openai_legacy(rng: random.Random) -> tuple[str, str]:
    a, b = rnd(rng, 20), rnd(rng, 20)
    return f"sk-{a}T3BlbkFJ{b}", a + b


SHAPES: list[tuple[str, str, Gen]] = [
    ("aws_access_key", "AKIA", _prefixed("AKIA", 16, UPPER32)),
    ("aws_access_key", "ASIA", _prefixed("ASIA", 16, UPPER32)),
    ("github_token", "ghp", _prefixed("ghp_", 36)),
    ("github_token", "gho", _prefixed("gho_", 36)),
    ("github_token", "ghu", _prefixed("ghu_", 36)),
    ("github_token", "ghs", _prefixed("ghs_", 36)),
    ("github_token", "ghr", _prefixed("ghr_", 36)),
    ("github_token", "github_pat", _github_pat),
    ("anthropic_api_key", "sk-ant-api03", _prefixed("sk-ant-api03-", 93, URLSAFE, "AA")),
    ("anthropic_admin_key", "sk-ant-admin01", _prefixed("sk-ant-admin01-", 93, URLSAFE, "AA")),
    ("openai_api_key", "sk-proj", _prefixed("sk-proj-", 156, URLSAFE)),
    ("openai_api_key", "sk-svcacct", _prefixed("sk-svcacct-", 156, URLSAFE)),
    ("openai_api_key", "sk-legacy", _openai_legacy),
    ("agenttrail_key", "sk-at", _prefixed("sk-at-", 40, URLSAFE)),
    ("slack_token", "xoxb", _slack_bot),
    ("slack_token", "xoxp", _slack_user),
    ("slack_token", "xoxa", _prefixed("xoxa-2-", 40)),
    ("slack_token", "xoxs", _prefixed("xoxs-", 60, HEX + "-")),
    ("slack_token", "xapp", _prefixed("xapp-1-A0123456789-1234567890123-", 64, HEX)),
    ("slack_webhook", "hooks", _slack_webhook),
    ("google_api_key", "AIza", _prefixed("AIza", 35, URLSAFE)),
    ("stripe_key", "sk_live", _prefixed("sk_live_", 99)),
    ("stripe_key", "rk_live", _prefixed("rk_live_", 24)),
    ("gitlab_token", "glpat", _prefixed("glpat-", 20, URLSAFE)),
    ("npm_token", "npm", _prefixed("npm_", 36)),
    ("pypi_token", "pypi", _prefixed("pypi-AgEIcHlwaS5vcmc", 120, URLSAFE)),
    ("huggingface_token", "hf", _prefixed("hf_", 34, string.ascii_letters)),
    ("jwt", "jwt", jwt),
    ("private_key", "rsa", lambda rng: pem(rng, "RSA PRIVATE KEY")),
    ("private_key", "ec", lambda rng: pem(rng, "EC PRIVATE KEY")),
    ("private_key", "pkcs8", lambda rng: pem(rng, "PRIVATE KEY")),
    ("private_key", "openssh", lambda rng: pem(rng, "OPENSSH PRIVATE KEY", width=70)),
    ("private_key", "encrypted", lambda rng: pem(rng, "ENCRYPTED PRIVATE KEY")),
    (
        "private_key",
        "rsa-legacy-encrypted",
        lambda rng: pem(
            rng, "RSA PRIVATE KEY", headers=f"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{rnd(rng, 32, HEX)}\n\n"
        ),
    ),
    ("private_key", "pgp", lambda rng: pem(rng, "PGP PRIVATE KEY BLOCK", headers="\n")),
]

# Each context embeds a token as it would really be written there; `{}` is where the token goes.
CONTEXTS: dict[str, Callable[[str], tuple[str, str]]] = {
    # (document, the token as it appears in the document)
    "prose": lambda t: (f"I rotated the credential {t} yesterday; please check.\nThanks, Ana", t),
    "json": lambda t: (
        json.dumps({"role": "user", "content": f"use this: {t}\nthen deploy", "n": 3}),
        json.dumps(t)[1:-1],
    ),
    "shell": lambda t: (f"$ echo '{t}' | gh auth login --with-token && git push origin main\nok", t),
    "diff": lambda t: (
        "diff --git a/deploy.conf b/deploy.conf\n--- a/deploy.conf\n+++ b/deploy.conf\n"
        "@@ -1,3 +1,3 @@\n region = eu-west-1\n-credential = none\n+credential = "
        + t.replace("\n", "\n+")
        + "\n retries = 3\n",
        t.replace("\n", "\n+"),
    ),
    "env": lambda t: (f"HOME=/root\nPATH=/usr/local/bin:/usr/bin\nDEPLOY_CREDENTIAL={t}\nLANG=C.UTF-8\n", t),
}


def corpus(seed: int = 7) -> list[tuple[str, str, str, str]]:
    """(kind, label, token, random body) for every shape, twice with different bodies."""
    rng = random.Random(seed)
    return [(kind, label, *gen(rng)) for _ in range(2) for kind, label, gen in SHAPES]


def assert_gone(out: str, body: str) -> None:
    """No 12-character piece of a secret's random part is left anywhere."""
    compact, flat = body.replace("\n", ""), out.replace("\n+", "").replace("\n", "")  # diffs prefix lines with +
    for i in range(0, max(1, len(compact) - 12), 4):
        assert compact[i : i + 12] not in flat, f"leaked {compact[i : i + 12]!r}"


@pytest.mark.parametrize("context", sorted(CONTEXTS))
@pytest.mark.parametrize(("kind", "label", "token", "body"), corpus(), ids=lambda v: str(v)[:16])
def test_every_shape_is_redacted_in_every_context(kind: str, label: str, token: str, body: str, context: str) -> None:
    doc, as_written = CONTEXTS[context](token)
    assert as_written in doc
    out = redact_text(doc)
    assert out == doc.replace(as_written, placeholder(kind))  # the token replaced, everything else intact
    assert_gone(out, body)


AKIA = "AKIAQ6EFIJCFZRPN2R47"


# Secrets only recognisable by where they stand: (document, the secret, expected kind).
def contextual(rng: random.Random) -> list[tuple[str, str, str]]:
    aws = rnd(rng, 40, ALNUM + "/+")
    pw = rnd(rng, 10, ALNUM) + "!#"
    opaque = rnd(rng, 40, ALNUM)
    basic = base64.b64encode(b"deploy:" + pw.encode()).decode()
    akia = AKIA
    return [
        (f"[default]\naws_access_key_id = {akia}\naws_secret_access_key = {aws}\n", aws, "aws_secret_key"),
        (f"AWS_SECRET_ACCESS_KEY={aws}\nAWS_REGION=eu-west-1", aws, "aws_secret_key"),
        (json.dumps({"Credentials": {"SecretAccessKey": aws, "Expiration": "2026-01-01"}}), aws, "aws_secret_key"),
        (f"aws configure set aws_secret_access_key {aws} --profile ci", aws, "aws_secret_key"),
        (f"User name,Access key ID,Secret access key\nci,{akia},{aws}\n", aws, "aws_secret_key"),
        (f"git clone https://deploy:{pw}@git.example.com/team/app.git", pw, "url_password"),
        (f"DATABASE_URL=postgresql://app:{pw}@db.internal:5432/app", pw, "url_password"),
        (f'curl -H "Authorization: Bearer {opaque}" https://api.example.com', opaque, "bearer_token"),
        (f"Authorization: Basic {basic}\r\nHost: example.com", basic, "basic_auth"),
        (json.dumps({"headers": {"x-api-key": opaque}}), opaque, "api_key"),
        (f"curl -u admin:{pw} https://ci.example.com/api", pw, "basic_auth"),
        (f"DB_PASSWORD={pw}\nDB_HOST=localhost", pw, "secret"),
        (f"export SENTRY_AUTH_TOKEN={opaque}\n", opaque, "secret"),
        (f'MY_SERVICE_API_KEY="{opaque}" ./run.sh', opaque, "secret"),
        (f"PGPASSWORD={pw} psql -h db -U app", pw, "secret"),
        (f"services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: {pw}\n", pw, "secret"),
        (f'password: "{pw}"\nuser: app\n', pw, "secret"),
        (json.dumps({"user": "app", "password": pw}), pw, "secret"),
        (f'client = Client(api_key="{opaque}")', opaque, "secret"),
        (f"GET /v1/items?access_token={opaque}&page=2", opaque, "secret"),
        (f"[client]\npassword = {pw}\n", pw, "secret"),
    ]


@pytest.mark.parametrize("case", range(21))
def test_secrets_recognised_by_their_context(case: int) -> None:
    doc, secret, kind = contextual(random.Random(case))[case]
    out = redact_text(doc)
    assert out == doc.replace(secret, placeholder(kind)).replace(AKIA, placeholder("aws_access_key"))


def test_a_secret_inside_a_context_keeps_its_own_type() -> None:
    token = "ghp_" + rnd(random.Random(1), 36)
    assert redact_text(f"GITHUB_TOKEN={token}") == "GITHUB_TOKEN=[REDACTED:github_token]"
    assert redact_text(f"Authorization: Bearer {token}") == "Authorization: Bearer [REDACTED:github_token]"
    assert redact_text(f"https://x:{token}@github.com/o/r") == "https://x:[REDACTED:github_token]@github.com/o/r"


ORDINARY = [
    "commit 3f786850e387550fdab836ed7e6dc881de23001b\nMerge: 89e6c98 7c9a3f2",
    "request 123e4567-e89b-12d3-a456-426614174000 took 12ms",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "![dot](data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==)",
    "pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    '<div class="sk-fading-circle-animation-delay task-runner-configuration-option">',
    "pip install scikit-learn sk-video-toolkit-extensions",
    "The Authorization header is required; bearer tokens are short-lived.",
    "Token: the unit of text a model reads. Secret: it must be rotated. password: required",
    '{"input_tokens": 12, "output_tokens": 34, "max_tokens": 1024, "token_count": 5}',
    "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}\nAPI_KEY=$(cat ~/.key)\nexport ANTHROPIC_API_KEY=$ANTHROPIC_API_KEY",
    "token = self.token\npassword = getpass.getpass('Password: ')\napi_key = os.environ[\"OPENAI_API_KEY\"]",
    'headers = {"Authorization": f"Bearer {token}", "x-api-key": self.api_key}',
    'raise InvalidToken("Invalid Token: \'Invalid token\'")\nprint("token=" + repr(tok))',
    "def login(user: str, password: str | None = None, token: Token = None) -> Session: ...",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY2Vy\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    "when your file has '-----BEGIN RSA PRIVATE KEY-----' pass it to load_pem()",
    "git@github.com:owner/repo.git and https://github.com/owner/repo and http://localhost:8080/@admin",
    'f"{self.upload_sequence_token:056d}"  accesskey="P"  Token: "#cccccc"',
    "eyJhbGciOi is the start of many tokens; so is sk- and ghp_ and AKIA",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_untouched(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize("module", [events, clock, json, http.server, base64])
def test_ordinary_python_source_is_untouched(module: object) -> None:
    source = inspect.getsource(module)  # type: ignore[arg-type]
    assert redact_text(source) == source


def test_redact_obj_walks_json_and_keeps_keys() -> None:
    rng = random.Random(3)
    anth, _ = SHAPES[8][2](rng)
    payload: dict[str, Any] = {
        "argv": ["curl", "-H", f"x-api-key: {anth}"],
        "env": {"PASSWORD": "hunter2", "apiKey": "x9Yz81Qq", "max_tokens": 1024, "token": "is a word here"},
        "headers": {"Authorization": "Bearer abcdefgh", "Cookie": "sid=abc; theme=dark"},
        "nested": ({"secret": None, "ok": True},),
        "session_id": "s-1",
    }
    out = redact_obj(payload)
    assert out == {
        "argv": ["curl", "-H", "x-api-key: [REDACTED:anthropic_api_key]"],
        "env": {
            "PASSWORD": "[REDACTED:password]",
            "apiKey": "[REDACTED:api_key]",
            "max_tokens": 1024,
            "token": "is a word here",
        },
        "headers": {"Authorization": "Bearer [REDACTED:authorization]", "Cookie": "[REDACTED:cookie]"},
        "nested": ({"secret": None, "ok": True},),
        "session_id": "s-1",
    }
    assert payload["env"]["PASSWORD"] == "hunter2"  # the input is not modified


def test_a_megabyte_prompt_loses_every_secret_and_nothing_else() -> None:
    rng = random.Random(11)
    words = [rnd(rng, rng.randint(2, 9), string.ascii_lowercase) for _ in range(500)]
    parts: list[str] = []
    expected: list[str] = []
    bodies: list[str] = []
    while sum(len(p) for p in parts) < 1_000_000:
        prose = " ".join(rng.choices(words, k=200))
        kind, _label, gen = rng.choice(SHAPES)
        token, body = gen(rng)
        parts += [prose, f" {token} "]
        expected += [prose, f" {placeholder(kind)} "]
        bodies.append(body)
    out = redact_text("".join(parts))
    assert out == "".join(expected)
    for body in bodies[:50]:
        assert_gone(out, body)


# Fragments that start many patterns but complete few: the inputs that make a backtracking regex blow up.
FRAGMENTS = [
    "sk-", "sk-ant-", "eyJ", ".", "-", "_", "=", ":", "://", "@", '"', "'", "\\", "\\\"", " ", "\n", "A", "KIA",
    "a", "Z", "0", "9", "/", "+", "ghp_", "xoxb-", "AIza", "token", "_KEY=", "PASSWORD", "password: ",
    "Authorization: ", "Bearer ", "-----BEGIN RSA PRIVATE KEY-----", "-----END", "-u ", "hooks.slack.com/services/",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=300).map("".join))
# A refused match (`Authorization:` read as the first header's value) hid the second header from one pass.
@example("Bearer sk-ant-Authorization: Authorization: sk-sk-")
def test_adversarial_mixtures_are_handled(text: str) -> None:
    out = redact_text(text)
    assert redact_text(out) == out  # nothing new appears once secrets are placeholders
    assert out.count("[REDACTED:") <= len(text) // 4 + 1


def test_redacting_twice_changes_nothing() -> None:
    once = redact_text("-u eyJ_KEY=sk-")  # `-u user:password` must not read a placeholder's tail as one
    assert once == "-u eyJ_KEY=[REDACTED:secret]"
    assert redact_text(once) == once
    assert redact_text("https://x:[REDACTED:secret]@h") == "https://x:[REDACTED:secret]@h"


def test_text_whose_lowercase_is_longer_still_loses_its_secrets() -> None:
    # 'İ' lowercases to two characters, so the case-insensitive rules run on the text itself.
    text = 'İstanbul DB: password = "s3cr3t-Pa55" and Authorization: Bearer abcDEF123456789xyz'
    assert redact_text(text) == (
        'İstanbul DB: password = "[REDACTED:secret]" and Authorization: Bearer [REDACTED:bearer_token]'
    )


@settings(max_examples=len(FRAGMENTS), deadline=None)
@given(st.sampled_from(FRAGMENTS), st.integers(min_value=1_000, max_value=50_000))
def test_long_repetitions_of_one_fragment_are_linear_work(fragment: str, size: int) -> None:
    # Quadratic or exponential matching would not finish on 50 kB of a repeated prefix; this bounds the
    # input rather than timing it (scaling on 1 MB is measured in docs/redaction.md).
    text = (fragment * (size // len(fragment) + 1))[:size]
    out = redact_text(text)
    assert len(out) <= len(text) + 64


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(len(SHAPES))),
    st.randoms(use_true_random=False),
    st.text(alphabet=string.ascii_letters + " ,.;:()[]{}", max_size=80),
    st.sampled_from([" ", "\n", "\t", '"', "'", "=", ": ", "(", "[", "<", ","]),
    st.text(alphabet=string.ascii_letters + " .,;()", max_size=80),
)
def test_a_token_anywhere_never_survives(i: int, rng: random.Random, before: str, sep: str, after: str) -> None:
    _kind, _label, gen = SHAPES[i]
    token, body = gen(rng)
    out = redact_text(before + sep + token + sep.strip("=:(<[") + " " + after)
    assert token not in out
    assert_gone(out, body)
