"""Redact known secret shapes from text before it is stored.

Prompts, responses, commands and diffs can hold credentials. Every string the tracer, the importers
or the gateway store goes through `redact_text` (or `redact_obj` for JSON-like payloads), which
replaces each secret with a typed placeholder such as ``[REDACTED:github_token]`` and leaves the
surrounding text as it was. The shapes are listed in docs/redaction.md.

Speed and safety: this runs on every stored prompt, so each rule is a separate pattern compiled once
and run as its own pass. Patterns start with a literal where they can (a leading ``\\b`` would turn
off the regex engine's fast literal search, so word boundaries are lookbehinds placed after the
literal), and every repetition that is followed by something it could have consumed is bounded
or possessive, so matching stays linear in the input (tests/test_redact.py checks adversarial inputs).
Case-insensitive rules match on the lowercased text and map the span back, because an IGNORECASE
pattern loses the literal search and is ~10x slower. Earlier passes replace specific token shapes;
later context passes (``NAME=value``, ``Authorization:``) skip values that are already placeholders.

Most strings hold no secret, so a prefilter runs first: every rule names literals ("needles") one of
which each of its matches contains, a few scans find which needles occur, and only their rules run.
`redact_obj` prefilters all of a value's strings at once. The result is exactly that of running every
rule (`_run_rules(text, None)`); tests/test_redact_prefilter.py checks it on generated secrets.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFIX = "[REDACTED:"


def placeholder(kind: str) -> str:
    return f"{PREFIX}{kind}]"


Check = Callable[[str, "re.Match[str]", str], "str | None"]
"""(original text, match, kind) -> the kind to write, or None to leave the match as it was."""


@dataclass(frozen=True, slots=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    needles: tuple[str, ...]  # literals one of which every match contains (in the lowercased text when `fold`)
    also: tuple[str, ...]  # and one of these too, when given
    fold: bool = False  # match on the lowercased text
    check: Check | None = None
    folded: re.Pattern[str] | None = None  # IGNORECASE twin, for the rare text whose lowercase is longer


_W = r"[A-Za-z0-9_]"  # a word character, for the boundary lookbehinds
_REFERENCE = ("$", PREFIX.lower(), "<", "{", "%", "*", "#", "arn:", "...", "\u2026", "xxx")
_NOT_SECRET = frozenset({"null", "none", "nil", "true", "false", "~", "undefined", "str", "bytes", "string"})
_CODE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_UPPER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_WORDISH = re.compile(r"[A-Za-z_\- ]+")  # `"your-password"`, `"Invalid token"`


def _value(text: str, m: re.Match[str]) -> tuple[str, bool]:
    v = text[m.start("v") : m.end("v")]
    quoted = v[:1] in "\"'\\"
    return v.strip("\"'\\"), quoted


def _is_reference(s: str) -> bool:
    """A value that names or templates a secret rather than holding one ($VAR, ${{…}}, <token>, None)."""
    low = s.lower()
    return not s or low.startswith(_REFERENCE) or low in _NOT_SECRET


def _random_like(s: str) -> bool:
    """Random credentials mix classes; words, css names and identifiers mostly do not."""
    return any(c.isdigit() for c in s) and any(c.islower() for c in s) and any(c.isupper() for c in s)


def _check_openai(text: str, m: re.Match[str], kind: str) -> str | None:
    body = m.group(0)[3:]
    if body.startswith(("proj-", "svcacct-", "admin-", "None-")) or _random_like(body):
        return kind
    return None


def _check_anthropic(text: str, m: re.Match[str], kind: str) -> str | None:
    return "anthropic_admin_key" if m.group(0).startswith("sk-ant-admin") else kind


def _check_jwt(text: str, m: re.Match[str], kind: str) -> str | None:
    parts = m.group(0).split(".")
    if len(parts) >= 2 and len(parts[0]) >= 10 and len(parts[1]) >= 10:
        return kind if parts[1].startswith("eyJ") or len(parts) == 5 else None
    return None


def _check_pem(text: str, m: re.Match[str], kind: str) -> str | None:
    # A header alone is prose about keys ("your file has '-----BEGIN RSA PRIVATE KEY-----'").
    body = m.group("body")
    return kind if m.group("end") or sum(not c.isspace() for c in body[:64]) >= 16 else None


def _check_plain(text: str, m: re.Match[str], kind: str) -> str | None:
    lead = text[m.start() : m.start("v")]
    if lead.rfind(PREFIX) > lead.rfind("]"):
        return None  # the "password" is the tail of a placeholder (`-u x=[REDACTED:secret]`)
    return None if _is_reference(_value(text, m)[0]) else kind


def _check_bearer(text: str, m: re.Match[str], kind: str) -> str | None:
    s = m.group("v")
    ok = len(s) >= 20 or (len(s) >= 8 and any(c.isdigit() for c in s) and any(c.isalpha() for c in s))
    return kind if ok else None


def _looks_like_code(s: str) -> bool:
    """An unquoted value that reads as code or a label: `self.token`, `getpass()`, `58`, `Username:`."""
    s = s.rstrip("=")
    if any(c in "()[]{}<>*" for c in s) or (s.isdigit() and len(s) < 8) or s.endswith(":"):
        return True
    return bool(_CODE_PATH.fullmatch(s)) and ("." in s or not any(c.isdigit() for c in s))


def _check_auth_header(text: str, m: re.Match[str], kind: str) -> str | None:
    s, _ = _value(text, m)
    scheme = (m.group("scheme") or "").lower() or None  # the IGNORECASE twin matches the text as written
    if _is_reference(s) or len(s) < 6 or (scheme is None and _looks_like_code(s)):
        return None
    if scheme == "basic":
        return "basic_auth"
    return kind if m.group("name").lower() == "authorization" else "api_key"


def _check_env(text: str, m: re.Match[str], kind: str) -> str | None:
    # The pattern starts at the name's suffix; walk back (bounded) to see the whole name is env-style.
    i = m.start()
    while i > 0 and m.start() - i < 64 and text[i - 1] in _NAME_CHARS:
        i -= 1
    name = text[i : m.start()] + m.group("suffix")
    if not _UPPER_NAME.fullmatch(name) or name.endswith("PUBLIC_KEY") or text[i - 1 : i] == ".":
        return None  # `Oid.EC_PUBLIC_KEY: …` is code, and a public key is no secret
    s, _ = _value(text, m)
    if m.group("sep") == ":":  # YAML, or as likely a dict entry or an annotation: judge as `name: value`
        return _check_named(text, m, kind)
    return None if _is_reference(s) or "[" in s or "(" in s else kind


def _check_named(text: str, m: re.Match[str], kind: str) -> str | None:
    raw = m.group("v")
    s, quoted = _value(text, m)
    if _is_reference(s) or len(s) < (4 if quoted else 6):  # `accesskey="P"`, `{token:02x}`
        return None
    if quoted:
        # An unclosed or space-padded "value" is the end of a string literal that merely mentions
        # the name: `getpass('Password: ')`, `print("token=" + repr(t))`. Words, identifiers and
        # masks are not credentials; neither is text with spaces (`'RFC 2518'`).
        opener = raw[: 2 if raw.startswith("\\") else 1]
        closed = len(raw) >= 2 * len(opener) and raw.endswith(opener)
        plain = not any(c.isspace() for c in s) and not _WORDISH.fullmatch(s) and "**" not in s  # masked
        return kind if closed and plain else None
    if _looks_like_code(s):
        return None
    # `private_key: PKCS7PrivateKeyTypes,` is an annotation, `{token: tok2}` a dict entry.
    after = text[m.end() : m.end() + 2]
    if m.group("sep") == ":" and _CODE_PATH.fullmatch(s) and (after[:1] in ",)=}" or after == " ="):
        return None
    return kind


def _r(
    kind: str,
    pattern: str,
    needles: str | tuple[str, ...],
    fold: bool = False,
    check: Check | None = None,
    also: tuple[str, ...] = (),
) -> _Rule:
    """`needles`: literals (space-separated, or a tuple), one of which every match contains: as written
    in the text, or lowercase for a `fold` rule. They gate the rule, so they must be exact, never a guess."""
    folded = re.compile(pattern, re.IGNORECASE) if fold else None
    listed = tuple(needles.split()) if isinstance(needles, str) else needles
    return _Rule(kind, re.compile(pattern), listed, also, fold, check, folded)


# Values: a quoted string (escapes allowed) or a bare word. Possessive, so a failed match never rescans.
# `"a\"b"` is one JSON string; in JSON inside a JSON string (tool arguments) `\"` closes it instead.
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*+\"?|\\\"(?:[^\"\\\n]|\\[^\"\n])*+(?:\\\")?|'[^'\n]*+'?"
_ENV_VALUE = rf"(?P<v>{_QUOTED}|[^\s\"'`;&|,)\]}}]++)"
_NAMED_VALUE = rf"(?P<v>{_QUOTED}|[^\s\"'`,;&)\]}}=]++=*+)"
_Q = r"(?:\\?[\"'])?"  # an optional (possibly JSON-escaped) quote around names and values
_TOKEN = r"[A-Za-z0-9_\-]"

_RULES: tuple[_Rule, ...] = (
    _r(
        "private_key",
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?P<body>(?:(?!-----END)[A-Za-z0-9+/=:,\-\s\\])*+)"  # base64, Proc-Type/DEK-Info, JSON \n
        r"(?P<end>-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
        "-----BEGIN",
        check=_check_pem,
    ),
    # Consumes the whole dotted run (always succeeds, so never rescans); the check decides.
    _r("jwt", rf"eyJ(?<!{_W}eyJ){_TOKEN}*+(?:\.{_TOKEN}++)*+", "eyJ", check=_check_jwt),
    _r("anthropic_api_key", rf"sk-ant-(?<!{_W}sk-ant-){_TOKEN}{{20,}}+", "sk-ant-", check=_check_anthropic),
    _r("agenttrail_key", rf"sk-at-(?<!{_W}sk-at-){_TOKEN}{{16,}}+", "sk-at-"),
    _r("openai_api_key", rf"sk-(?<!{_W}sk-){_TOKEN}{{20,}}+", "sk-", check=_check_openai),
    _r("github_token", rf"gh[pousr]_(?<!{_W}gh._)[A-Za-z0-9]{{30,}}+", "ghp_ gho_ ghu_ ghs_ ghr_"),
    _r("github_token", rf"github_pat_(?<!{_W}github_pat_)[A-Za-z0-9_]{{20,}}+", "github_pat_"),
    _r("gitlab_token", rf"glpat-(?<!{_W}glpat-){_TOKEN}{{20,}}+", "glpat-"),
    _r(
        "slack_webhook",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]++",
        "https://hooks.slack.com/",
    ),
    _r("slack_token", rf"xox[abposr]-(?<!{_W}xox.-)[A-Za-z0-9\-]{{10,}}+", "xoxa- xoxb- xoxp- xoxo- xoxs- xoxr-"),
    _r("slack_token", rf"xapp-(?<!{_W}xapp-)[A-Za-z0-9\-]{{10,}}+", "xapp-"),
    _r("google_api_key", rf"AIza(?<!{_W}AIza){_TOKEN}{{35}}(?!{_TOKEN})", "AIza"),
    _r(
        "stripe_key",
        rf"[sr]k_(?:live|test)_(?<!{_W}.k_\w{{4}}_)[A-Za-z0-9]{{20,}}+",
        "sk_live_ rk_live_ sk_test_ rk_test_",
    ),
    _r("npm_token", rf"npm_(?<!{_W}npm_)[A-Za-z0-9]{{36}}(?![A-Za-z0-9])", "npm_"),
    _r("pypi_token", rf"pypi-AgE(?<!{_W}pypi-AgE){_TOKEN}{{50,}}+", "pypi-AgE"),
    _r("huggingface_token", rf"hf_(?<!{_W}hf_)[A-Za-z]{{34}}(?![A-Za-z0-9])", "hf_"),
    _r(
        "aws_access_key",
        rf"A(?<!{_W}A)(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{{16}}(?![A-Za-z0-9])",
        "AKIA ASIA ABIA ACCA A3T",
    ),
    _r(
        "aws_secret_key",
        rf"(?:secret_?access_?key|aws_secret_key)(?![a-z0-9_]){_Q}(?:[ \t]*+[:=][ \t]*+|[ \t]++){_Q}"
        r"(?P<v>[a-z0-9/+]{40})(?![a-z0-9/+=])",
        "secretaccess secret_access aws_secret_key",
        fold=True,
    ),
    # `AKIA…,<secret>` as in the credentials CSV the AWS console hands out.
    _r(
        "aws_secret_key",
        r"\[REDACTED:aws_access_key\][,;:|\s\"']{1,5}(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        "[REDACTED:aws_access_key]",
    ),
    _r("url_password", r"://(?P<user>[^/\s:@]{0,256}):(?P<v>[^/\s@]{1,256})@", "://", check=_check_plain, also=("@",)),
    _r(
        "basic_auth",
        r"-(?<!\S-)(?:u|-user)[ \t=]++[^\s:\"']{1,256}:(?P<v>[^\s\"']++)",
        ("-u ", "-u\t", "-u=", "--user"),
        check=_check_plain,
        also=(":",),
    ),
    _r(
        "bearer_token",
        rf"(?P<name>authorization|api-key|auth-token){_Q}[ \t]*+[:=][ \t]*+{_Q}"
        r"(?:(?P<scheme>bearer|basic|token|digest|bot)[ \t]++)?(?P<v>[^\s\"'`\\,;)\]}]++)",
        "authorization api-key auth-token",
        fold=True,
        check=_check_auth_header,
    ),
    _r(
        "bearer_token",
        r"bearer(?<![a-z0-9_]bearer)[ \t]++(?P<v>[a-z0-9\-._~+/]++=*+)",
        "bearer",
        fold=True,
        check=_check_bearer,
    ),
    _r(
        "secret",
        r"(?P<suffix>_KEY|_TOKEN|_SECRET|_PASSWORD|_PASSWD|_PWD|_PASS|PASSWORD|SECRET|TOKEN)"
        rf"(?P<sep>=|:(?=[ \t]))[ \t]*+{_ENV_VALUE}",
        "_KEY TOKEN SECRET PASS _PWD",
        check=_check_env,
        also=("=", ":"),
    ),
    _r(
        "secret",
        r"(?:password|passwd|passphrase|_pwd|secret|token|api[_\-]?key|access[_\-]?key|secret[_\-]?key"
        r"|private[_\-]?key|signing[_\-]?key)(?![a-z0-9_])"
        rf"{_Q}[ \t]*+(?P<sep>:=|=>|=|:)[ \t]*+{_NAMED_VALUE}",
        "pass _pwd secret token key",
        fold=True,
        check=_check_named,
        also=("=", ":"),
    ),
)


def _apply(rule: _Rule, text: str, low: str, gated: bool) -> str:
    pattern, subject = rule.pattern, text
    if rule.folded is not None:
        # str.lower() only ever lengthens (e.g. 'İ'); at equal length every index maps back one to one.
        if len(low) == len(text):
            subject = low
        else:
            pattern = rule.folded
    if gated and rule.also and not any(n in subject for n in rule.also):
        return text
    out: list[str] = []
    pos = at = 0
    while (m := pattern.search(subject, at)) is not None:
        kind = rule.check(text, m, rule.kind) if rule.check else rule.kind
        if kind is None:
            # Looked at again from the next character, not past the match: a match refused for its value
            # (`Authorization: Authorization: sk-…` reads `Authorization:` as the first one's value) may
            # hide one that starts inside it, which a second pass over the output would then find.
            at = m.start() + 1
            continue
        at = max(m.end(), m.start() + 1)
        start, end = m.span("v") if "v" in pattern.groupindex else m.span()
        # Keep a quoted value's quotes, so `"password": "…"` stays valid JSON.
        value = text[start:end]
        start += len(value) - len(value.lstrip("\\\"'"))
        end -= len(value) - len(value.rstrip("\\\"'"))
        out.append(text[pos:start])
        out.append(placeholder(kind))
        pos = end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


# The prefilter. Checking each rule's needles one by one is some 50 scans of every string, and a regex
# alternation of them all scans at a few tens of MB/s: the regex engine is fast only for a pattern that
# starts with one literal character. So the needles are grouped by an anchor, a character they contain
# that ordinary text holds little of, and each group is one pattern that starts with it and then, for
# each needle, looks behind and ahead in a group of its own (`-(?:(?<=sk-)(?P<n3>)|)(?:(?=u )(?P<n9>)|)…`,
# past a first check that one of them is there): every needle found at a place is reported, even when
# several share it. Ten such scans run at memory speed and name the rules worth running. Case-sensitive
# needles are looked for in the UTF-8 bytes, lowercase ones in those bytes lowercased (fast even when the
# text is not ASCII).
_TEXT_ANCHORS = "B-_:JA"
_LOW_ANCHORS = "kpcbz"
# The only characters outside ASCII whose lowercase holds ASCII letters (checked in tests/test_redact.py):
# with one of them, lowercasing the bytes is not lowercasing the text, and every rule runs.
_LOWER_TO_ASCII = ("\u0130", "\u212a")
_ALL = frozenset(range(len(_RULES)))


def _scanned(rule: _Rule) -> list[tuple[bool, str]]:
    """(in the lowercase?, needle) as the prefilter looks for each of the rule's needles."""
    out = []
    for n in rule.needles:
        if rule.fold:
            out.append((True, n))
        elif any(a in n for a in _TEXT_ANCHORS):
            out.append((False, n))
        else:
            # `TOKEN` in the text is `token` in its lowercase (ASCII needles): the lowercase scans find
            # it, so the env names need no scans of their own.
            out.append((True, n.lower()))
    return out


_Gate = tuple[re.Pattern[bytes], tuple[tuple[bytes, frozenset[int]], ...]]  # a scan; each group's needle, rules
_MATCHES = 1000  # matches of one scan looked at; past that (text made of needles) each needle is looked for


def _look(n: str, i: int) -> str:
    """Zero-width: needle `n` around its anchor `n[i]`, from just after the anchor."""
    before = f"(?<={re.escape(n[: i + 1])})" if i else ""
    return before + (f"(?={re.escape(n[i + 1 :])})" if n[i + 1 :] else "")


def _gates(low: bool, anchors: str) -> tuple[_Gate, ...]:
    by_anchor: dict[str, list[tuple[str, int]]] = {}
    for n in sorted({n for r in _RULES for lo, n in _scanned(r) if lo == low}):
        i = next((n.index(a) for a in anchors if a in n), 0)
        by_anchor.setdefault(n[i], []).append((n, i))
    gates = []
    for anchor, needles in sorted(by_anchor.items()):
        # First the character before the anchor or the two after it: most anchors in ordinary text, and
        # runs of them (`-----`, `___`), fail there.
        before = "".join(sorted({n[i - 1] for n, i in needles if i}))
        after = sorted({n[1:3] for n, i in needles if not i and len(n) > 1})
        guard = [f"(?<=[{re.escape(before)}]{re.escape(anchor)})"] if before else []
        guard += [f"(?={'|'.join(map(re.escape, after))})"] if after else []
        first = "|".join(_look(n, i) for n, i in needles)
        each = "".join(f"(?:{_look(n, i)}(?P<n{j}>)|)" for j, (n, i) in enumerate(needles))
        pattern = re.compile(f"{re.escape(anchor)}(?:{'|'.join(guard)})(?:{first}){each}".encode())
        rules = [frozenset(k for k, r in enumerate(_RULES) if (low, n) in _scanned(r)) for n, _ in needles]
        gates.append((pattern, tuple((n.encode(), r) for (n, _), r in zip(needles, rules, strict=True))))
    return tuple(gates)


_GATES = (_gates(False, _TEXT_ANCHORS), _gates(True, _LOW_ANCHORS))


def _candidates(text: str) -> frozenset[int]:
    """The rules one of whose needles occurs in `text`; no other rule can match it."""
    if not text.isascii() and any(c in text for c in _LOWER_TO_ASCII):
        return _ALL
    raw = text.encode("utf-8", "surrogatepass")
    found: set[int] = set()
    for gates, subject in zip(_GATES, (raw, raw.lower()), strict=True):
        for pattern, needles in gates:
            first = pattern.search(subject)
            if first is None:
                continue
            seen: set[int] = set()
            for k, m in enumerate(pattern.finditer(subject, first.start())):
                if k == _MATCHES:
                    seen.update(j for j, (needle, _) in enumerate(needles) if needle in subject)
                    break
                seen.update(j for j, value in enumerate(m.groups()) if value is not None)
            for j in seen:
                found |= needles[j][1]
    return frozenset(found)


# Rules whose case-sensitive needles the prefilter looks for lowercased: their own needles say more.
_RECHECK = frozenset(i for i, r in enumerate(_RULES) if not r.fold and any(lo for lo, _ in _scanned(r)))
# What a replacement can bring: a needle inside its placeholder (`key` in `[REDACTED:aws_access_key]`).
# None reaches across the placeholder's brackets: no needle holds `[` or `]` but the placeholder itself
# (checked in tests/test_redact_prefilter.py), so the rest of the text need not be scanned again.
_KINDS = sorted({r.kind for r in _RULES} | {"basic_auth", "api_key", "anthropic_admin_key"})
_IN_PLACEHOLDERS = _candidates(" ".join(placeholder(k) for k in _KINDS))


def _run_rules(text: str, rules: frozenset[int] | None) -> str:
    """The rules in `rules` (all of them for None, ungated: the plain reference path) in order."""
    low = text.lower()
    for i, rule in enumerate(_RULES):
        if rules is not None and (i not in rules or (i in _RECHECK and not any(n in text for n in rule.needles))):
            continue
        new = _apply(rule, text, low, gated=rules is not None)
        if new is not text:
            text, low = new, new.lower()
            if rules is not None:
                rules |= _IN_PLACEHOLDERS
    return text


def redact_text(text: str) -> str:
    """Replace every known secret shape in `text` with a typed placeholder; keep everything else."""
    rules = _candidates(text)
    return _run_rules(text, rules) if rules else text


_SHORT = 256  # characters: a string this short is cheaper to run the value's rules on than to prefilter


def _redact_within(rules: frozenset[int]) -> Callable[[str], str]:
    """redact_text for the strings of one value, `rules` being the candidates of all of them together."""

    def text(s: str) -> str:
        if len(s) >= _SHORT:
            return redact_text(s)
        return _run_rules(s, rules)

    return text


_SENSITIVE_KEY = re.compile(
    r"(?:password|passwd|passphrase|secret|token|api_?key|access_?key|private_?key|secret_?key"
    r"|authorization|cookie)$"
)


_KEY_KINDS = {"apikey": "api_key", "accesskey": "access_key", "privatekey": "private_key", "secretkey": "secret_key"}


@functools.lru_cache(maxsize=4096)
def _key_kind(key: str) -> str | None:
    """The credential a key names (`password`, `api_key`, …), or None. Payloads repeat their keys."""
    m = _SENSITIVE_KEY.search(key.lower().replace("-", "_"))
    return None if m is None else _KEY_KINDS.get(m.group(0).replace("_", ""), m.group(0))


def _redact_value_for_key(key: str, value: str) -> str:
    kind = _key_kind(key)
    if kind is None or PREFIX in value or _is_reference(value.strip()):
        return value
    scheme, _, rest = value.strip().partition(" ")
    if kind == "authorization" and rest and scheme.isalpha():
        return f"{scheme} {placeholder(kind)}"
    if kind != "cookie" and any(c.isspace() for c in value.strip()):
        return value  # prose, not a credential (e.g. a description field named `token`)
    return placeholder(kind)


_LEAVES = (int, float, bool, type(None))


def _same(text: str) -> str:
    return text


def _walk(obj: Any, text: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(v, _LEAVES):
                out[k] = v
            elif isinstance(v, str):
                out[k] = _redact_value_for_key(str(k), text(v))
            else:
                out[k] = _walk(v, text)
        return out
    if isinstance(obj, list):
        return [_walk(v, text) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_walk(v, text) for v in obj)
    return obj


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like value with every string redacted; dict keys are kept as they are.

    A string under a key named like a credential (password, token, api_key, authorization, …) is
    replaced whole when it looks like one, even if it matches no known shape.
    """
    strings: list[str] = []
    _gather(obj, strings)
    # One prefilter over all of the value's strings (NUL between them, so it adds no needle of its own):
    # most payloads are a dozen short strings, and the prefilter's cost is mostly per call.
    rules = _candidates("\x00".join(strings)) if strings else frozenset()
    return _walk(obj, _redact_within(rules) if rules else _same)


def _gather(obj: Any, out: list[str]) -> bool:
    """Every string in `obj` into `out` (dict values, not keys), and, in the same walk, whether one sits
    under a key named like a credential (what `_walk` judges by key)."""
    keyed = False
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str):
                out.append(v)
                if not keyed and _key_kind(str(k)) is not None:
                    keyed = True
            elif not isinstance(v, _LEAVES) and _gather(v, out):
                keyed = True
    elif isinstance(obj, list | tuple):
        for v in obj:
            if isinstance(v, str):
                out.append(v)
            elif not isinstance(v, _LEAVES) and _gather(v, out):
                keyed = True
    elif isinstance(obj, str):
        out.append(obj)
    return keyed


def redact_values(objs: list[Any]) -> list[Any]:
    """`redact_obj` of each of `objs`, prefiltered together, except that a value with nothing to redact
    is returned itself, not a copy. For ingest: most payloads hold no secret, and copying each one cost
    more than deciding so."""
    strings: list[str] = []
    keyed = [_gather(o, strings) for o in objs]
    rules = _candidates("\x00".join(strings)) if strings else frozenset()
    if rules:
        return _walk(objs, _redact_within(rules))
    return [_walk(o, _same) if k else o for o, k in zip(objs, keyed, strict=True)]
