"""The text syntax of strace output, and nothing about what it means.

`strace -f -ttt -yy -o FILE` writes one line per system call:

    9234  1795364979.670068 openat(AT_FDCWD</tmp/p>, "new.txt", O_WRONLY|O_CREAT, 0666) = 3</tmp/p/new.txt>

This module splits such a line into pid, timestamp, syscall name, top-level arguments and return value,
and decodes the argument shapes the tracer needs (C-escaped strings, string arrays, `-yy` fd
decorations, flag sets, return values). It is pure string work so that it can be tested on captured
text; `strace_parser` gives the calls their meaning.

Escaping: strace is run WITHOUT `-x`/`-xx`. Its default style escapes `"` and `\\`, uses `\\t \\n \\r \\v \\f`
and octal `\\NNN` for every other unprintable or non-ASCII byte, also inside `<...>` fd decorations (a
`>` in a path is printed `\\76`). So a literal `<`, `>` or `"` outside an escape is always syntax, which
is what lets a single forward scan find argument boundaries. `unescape` also accepts `\\xHH` in case a
caller adds `-x`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_HEADER = re.compile(r"(\d+)\s+(\d+\.\d+)\s+(.*)")
_RESUMED = re.compile(r"<\.\.\. ([a-z0-9_]+) resumed>(.*)", re.S)
_UNFINISHED = " <unfinished ...>"
_SYNTAX = re.compile(r'["\\<>()\[\]{},]')
_IN_STRING = re.compile(r'["\\]')
_PIDNS = re.compile(r"/\* (\d+) in strace's PID NS \*/")
_SIMPLE_ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34, "'": 39}

LineKind = Literal["call", "unfinished", "resumed", "other"]


@dataclass(slots=True)
class RawLine:
    """One strace output line, split but not interpreted.

    For `call` and `unfinished`, `body` is the text after the syscall's opening parenthesis (for
    `unfinished` without the ` <unfinished ...>` marker). For `resumed` it is the text after
    `<... name resumed>`, to be appended to the matching unfinished body. For `other` (`+++ exited`,
    `--- SIGCHLD`) `body` is the whole text after the timestamp.
    """

    pid: int
    ts: float
    kind: LineKind
    name: str
    body: str


@dataclass(slots=True)
class Ret:
    """A system call's result: `= 3</path>`, `= -1 ENOENT (No such file)`, `= ?`."""

    value: int | None
    errno: str | None = None
    decoration: str | None = None

    @property
    def failed(self) -> bool:
        return self.errno is not None


def split_line(line: str) -> RawLine | None:
    """Split `PID TS rest`; None for anything that is not a line of `-f -ttt` output."""
    m = _HEADER.fullmatch(line.rstrip("\n"))
    if m is None:
        return None
    pid, ts, rest = int(m.group(1)), float(m.group(2)), m.group(3)
    if rest.startswith("<..."):
        r = _RESUMED.fullmatch(rest)
        if r is None:
            return None
        return RawLine(pid, ts, "resumed", r.group(1), r.group(2))
    if rest.startswith(("+++", "---")):
        return RawLine(pid, ts, "other", "", rest)
    name, paren, body = rest.partition("(")
    if not paren or not name.replace("_", "").isalnum():
        return None
    if body.endswith(_UNFINISHED):
        return RawLine(pid, ts, "unfinished", name, body[: -len(_UNFINISHED)])
    return RawLine(pid, ts, "call", name, body)


def split_call(body: str) -> tuple[list[str], str] | None:
    """Split the text after `name(` into top-level arguments and the text after the closing `)`.

    Returns None when the parenthesis never closes (a truncated or garbled line). This runs once per
    traced syscall, so it jumps between syntax characters with a regex instead of visiting each one.
    """
    args: list[str] = []
    depth = 0  # (), [], {} nesting
    angle = 0  # fd decoration `<...>` nesting; paths inside are escaped, so `<`/`>` are syntax
    start = 0
    pos = 0
    search = _SYNTAX.search
    while True:
        m = search(body, pos)
        if m is None:
            return None
        i = m.start()
        c = body[i]
        pos = i + 1
        if c == '"':
            while True:  # to the closing quote, stepping over escapes
                q = _IN_STRING.search(body, pos)
                if q is None:
                    return None
                pos = q.end() + (1 if body[q.start()] == "\\" else 0)
                if body[q.start()] == '"':
                    break
        elif c == "\\":
            if angle:
                pos = i + 2  # an escape inside a decoration
        elif c == "<":
            # A decoration follows an fd number or AT_FDCWD (`3</x>`, `AT_FDCWD</x>`) or nests inside one
            # (`</dev/null<char 1:3>>`). Elsewhere `<` does not occur outside strings.
            if angle or (i and (body[i - 1].isalnum() or body[i - 1] == "_")):
                angle += 1
        elif c == ">":
            if angle:
                angle -= 1  # outside decorations `>` is part of `=>` (clone3) and is ignored
        elif angle:
            pass
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                if c != ")":
                    return None
                last = body[start:i].strip()
                if last or args:
                    args.append(last)
                return args, body[i + 1 :]
            depth -= 1
        elif c == "," and depth == 0:
            args.append(body[start:i].strip())
            start = i + 1


def split_list(text: str) -> list[str]:
    """Top-level comma-separated items of an array or struct text `[a, b]` / `{x=1, y=2}`."""
    inner = text.strip()
    if len(inner) < 2 or inner[0] not in "[{":
        return []
    parsed = split_call(inner[1:-1] + ")")
    return parsed[0] if parsed is not None else []


def unescape(s: str) -> bytes:
    """Decode the inside of a strace-quoted string to the original bytes."""
    if "\\" not in s:
        return s.encode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c != "\\" or i + 1 >= n:
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        e = s[i + 1]
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e == "x" and i + 3 < n + 1 and _is_hex(s[i + 2 : i + 4]):
            out.append(int(s[i + 2 : i + 4], 16))
            i += 4
        elif e in "01234567":
            # strace prints the shortest octal form unless a digit follows, so reading up to three
            # octal digits greedily is exact.
            j = i + 1
            while j < n and j < i + 4 and s[j] in "01234567":
                j += 1
            out.append(int(s[i + 1 : j], 8) & 0xFF)
            i = j
        else:
            out += e.encode("utf-8", "surrogateescape")
            i += 2
    return bytes(out)


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in s)


def to_text(b: bytes) -> str:
    """Bytes of a path or argument as text that always survives JSON: undecodable bytes become `\\xNN`."""
    return b.decode("utf-8", "backslashreplace")


def decode_string(tok: str) -> tuple[str, bool] | None:
    """`"abc"` or `"abc"...` (truncated at -s) to (text, truncated); None for pointers and NULL."""
    tok = tok.strip()
    if not tok.startswith('"'):
        return None
    truncated = tok.endswith('"...')
    end = len(tok) - 3 if truncated else len(tok)
    if end < 2 or tok[end - 1] != '"':
        return None
    return to_text(unescape(tok[1 : end - 1])), truncated


def decode_string_array(tok: str) -> tuple[list[str], bool] | None:
    """`["a", "b", ...]` to (items, truncated); None when strace printed an address instead."""
    tok = tok.strip()
    if not tok.startswith("["):
        return None
    items: list[str] = []
    truncated = False
    for item in split_list(tok):
        if item == "...":
            truncated = True
            continue
        decoded = decode_string(item)
        if decoded is None:
            continue
        items.append(decoded[0])
        truncated = truncated or decoded[1]
    return items, truncated


def decode_fd(tok: str) -> tuple[str, str | None]:
    """`3</path>` → ("3", "/path"); `AT_FDCWD</d>` → ("AT_FDCWD", "/d"); `AT_FDCWD` → ("AT_FDCWD", None).

    `-yy` appends device numbers to device paths (`</dev/null<char 1:3>>`); they are dropped. Socket
    decorations come back raw (`TCP:[123]`), the caller knows what it asked for.
    """
    tok = tok.strip()
    lt = tok.find("<")
    if lt < 0 or not tok.endswith(">"):
        return tok, None
    inner = tok[lt + 1 : -1]
    nested = inner.find("<")
    if nested >= 0:
        inner = inner[:nested]
    return tok[:lt], to_text(unescape(inner))


def decode_flags(tok: str) -> frozenset[str]:
    """`O_WRONLY|O_CREAT|O_TRUNC` → the set of names; numbers stay as their text."""
    return frozenset(part.strip() for part in tok.split("|") if part.strip())


def parse_ret(rest: str) -> Ret:
    """Parse the text after the closing parenthesis: ` = 3</x>`, ` = -1 ENOENT (...)`, ` = ?`."""
    text = rest.strip()
    if not text.startswith("="):
        return Ret(None)
    text = text[1:].strip()
    value_text, _, tail = text.partition(" ")
    decoration: str | None = None
    lt = value_text.find("<")
    if lt > 0:
        # The decoration may contain escaped spaces only (`\\40` is not used; spaces are literal), so
        # re-join it from the full text instead of the first space-separated token.
        full = text[lt:]
        depth = 0
        for j, ch in enumerate(full):
            if ch == "<":
                depth += 1
            elif ch == ">":
                depth -= 1
                if depth == 0:
                    _, decoration = decode_fd("x" + full[: j + 1])
                    tail = full[j + 1 :].strip()
                    break
        value_text = value_text[:lt]
    try:
        value: int | None = int(value_text, 0)
    except ValueError:
        value = None
    ns = _PIDNS.search(tail)
    if ns is not None:
        value = int(ns.group(1))  # clone's return inside a pid namespace, as strace's own pid
    errno = None
    if value is not None and value < 0:
        name = tail.split(" ", 1)[0] if tail else ""
        if name.startswith("E"):
            errno = name
    return Ret(value, errno, decoration)
