from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agenttrail.tracer import strace_syntax as sx


def test_split_line_call() -> None:
    raw = sx.split_line('9234  1795364979.670068 openat(AT_FDCWD</tmp/p>, "a.txt", O_RDONLY) = 3</tmp/p/a.txt>')
    assert raw is not None
    assert (raw.pid, raw.ts, raw.kind, raw.name) == (9234, 1795364979.670068, "call", "openat")
    parsed = sx.split_call(raw.body)
    assert parsed is not None
    args, rest = parsed
    assert args == ["AT_FDCWD</tmp/p>", '"a.txt"', "O_RDONLY"]
    ret = sx.parse_ret(rest)
    assert (ret.value, ret.errno, ret.decoration, ret.failed) == (3, None, "/tmp/p/a.txt", False)


def test_split_line_unfinished_and_resumed() -> None:
    u = sx.split_line('9764  1.5 openat(AT_FDCWD</t>, "/t/x", O_WRONLY|O_CREAT, 0666 <unfinished ...>')
    r = sx.split_line("9764  1.6 <... openat resumed>) = 8</t/x>")
    assert u is not None and r is not None
    assert (u.kind, u.name, u.body) == ("unfinished", "openat", 'AT_FDCWD</t>, "/t/x", O_WRONLY|O_CREAT, 0666')
    assert (r.kind, r.name, r.body) == ("resumed", "openat", ") = 8</t/x>")
    parsed = sx.split_call(u.body + r.body)
    assert parsed is not None and parsed[0][3] == "0666"


def test_split_line_other_and_garbage() -> None:
    other = sx.split_line("10000 1.0 +++ killed by SIGTERM +++")
    assert other is not None and other.kind == "other"
    assert sx.split_line("strace: Process 12 attached") is None
    assert sx.split_line("") is None
    assert sx.split_line("12 1.0 <... nonsense") is None


def test_split_call_respects_strings_structs_and_decorations() -> None:
    body = '4<TCP:[14924]>, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("1.2.3.4")}, 16) = 0'
    parsed = sx.split_call(body)
    assert parsed is not None
    assert parsed[0] == [
        "4<TCP:[14924]>",
        '{sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("1.2.3.4")}',
        "16",
    ]
    # A comma, parenthesis and '>' inside a string; a decoration with a nested device part.
    parsed = sx.split_call('"a, b) >c", 3</dev/null<char 1:3>>, [1, 2]) = 0')
    assert parsed is not None
    assert parsed[0] == ['"a, b) >c"', "3</dev/null<char 1:3>>", "[1, 2]"]
    # clone3's `=>` is not a decoration.
    parsed = sx.split_call("{flags=CLONE_VM, exit_signal=0} => {parent_tid=[9765]}, 88) = 9765")
    assert parsed is not None
    assert parsed[0] == ["{flags=CLONE_VM, exit_signal=0} => {parent_tid=[9765]}", "88"]
    assert sx.split_call('"unterminated') is None


def test_unescape_c_escapes_octal_and_hex() -> None:
    assert sx.unescape(r"we\tird\"q>\\\303\251.txt") == 'we\tird"q>\\é.txt'.encode()
    assert sx.unescape(r"a\0b") == b"a\x00b"
    assert sx.unescape(r"\0017") == b"\x017"  # strace pads to 3 digits when a digit follows
    assert sx.unescape(r"\x41\n") == b"A\n"
    assert sx.unescape("plain") == b"plain"


def test_decode_string_and_arrays() -> None:
    assert sx.decode_string('"a b"') == ("a b", False)
    assert sx.decode_string('"abc"...') == ("abc", True)
    assert sx.decode_string("0x7ffc1234") is None
    assert sx.decode_string("NULL") is None
    # Undecodable bytes stay visible and JSON-safe.
    assert sx.decode_string(r'"\377x"') == ("\\xffx", False)
    assert sx.decode_string_array('["ls", "-l", "a\\"b"]') == (["ls", "-l", 'a"b'], False)
    assert sx.decode_string_array('["a", ...]') == (["a"], True)
    assert sx.decode_string_array("0x55d909428d00") is None


def test_decode_fd_and_flags() -> None:
    assert sx.decode_fd("AT_FDCWD</tmp/st/d ir>") == ("AT_FDCWD", "/tmp/st/d ir")
    assert sx.decode_fd("AT_FDCWD") == ("AT_FDCWD", None)
    assert sx.decode_fd(r"3</tmp/we\tird\"q\76>") == ("3", '/tmp/we\tird"q>')
    assert sx.decode_fd("3</dev/null<char 1:3>>") == ("3", "/dev/null")
    assert sx.decode_fd("5<UDP:[14926]>") == ("5", "UDP:[14926]")
    assert sx.decode_flags("O_WRONLY|O_CREAT|O_TRUNC") == {"O_WRONLY", "O_CREAT", "O_TRUNC"}


def test_parse_ret_variants() -> None:
    r = sx.parse_ret(" = -1 ENOENT (No such file or directory)")
    assert (r.value, r.errno, r.failed) == (-1, "ENOENT", True)
    assert sx.parse_ret("   = ?").value is None
    r = sx.parse_ret(" = 3</tmp/st/d ir/x y.txt>")
    assert (r.value, r.decoration) == (3, "/tmp/st/d ir/x y.txt")
    r = sx.parse_ret(" = -1 EINPROGRESS (Operation now in progress)")
    assert r.errno == "EINPROGRESS"
    assert sx.parse_ret(" = 0x7f00").value == 0x7F00
    # --pidns-translation: a pid from inside a namespace, with its value in strace's namespace
    assert sx.parse_ret(" = 2 /* 13338 in strace's PID NS */").value == 13338


@given(st.text(max_size=300))
def test_syntax_helpers_never_raise(text: str) -> None:
    raw = sx.split_line("1 1.0 " + text)
    if raw is not None:
        sx.split_call(raw.body)
    sx.split_call(text)
    sx.unescape(text)
    sx.decode_string(text)
    sx.decode_string_array(text)
    sx.decode_fd(text)
    sx.parse_ret(text)
