"""packetdrill's tokens, with the ``#ifdef`` preprocessor folded into the scan.

The conditionals are evaluated while scanning, not in a pass over lines
before it, because a line that starts with ``#`` inside a multi-line
backtick command or ``%{ }%`` block (Google's scripts have both) is shell or
Python, not a directive. Numbers and words follow flex's longest-match rule
as packetdrill's lexer.l does, so ``+.1...0.200`` reads as ``+`` ``.1``
``...`` ``0.200`` and ``1:1(0)`` as numbers and punctuation.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple


class PacketdrillError(Exception):
    """A script that cannot be read: printed as ``path:line: message``."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class Token(NamedTuple):
    """``kind`` is int, hex, float, word, ipv4, string, command, code, option, ellipsis, eof, or the punctuation character."""

    kind: str
    text: str  # the source text; for string/command/code/option, the content
    line: int
    start: int  # offsets into the source, for notes kept as written
    end: int
    value: str | None = None  # an option's value


DIRECTIVES = ("ifdef", "ifndef", "else", "endif")
# cpp directives packetdrill has no use for: an error rather than a silently ignored line.
UNSUPPORTED_DIRECTIVES = ("if", "elif", "define", "undef", "include", "error", "warning", "pragma", "line")

# ASCII only, as flex's classes are: a Unicode digit or letter is punctuation here, and a syntax error later.
_BLANK = re.compile(r"[ \t\r\f\v]+")
_DIRECTIVE = re.compile(r"#([A-Za-z_]\w*)?[ \t]*(.*)", re.ASCII)
_NAME = re.compile(r"[A-Za-z_]\w*", re.ASCII)
_IPV4 = re.compile(r"\d+\.\d+\.\d+\.\d+", re.ASCII)
_FLOAT = re.compile(r"-?\d*\.\d+", re.ASCII)
_INT = re.compile(r"-?\d+", re.ASCII)
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_WORD = re.compile(r"gen-\d+|\w+", re.ASCII)  # NPLab's generic TCP option gen-N is one word
_NUMBER_OR_WORD = re.compile(r"\w|-\.?\d|\.\d", re.ASCII)
_STRING = re.compile(r'"(?:\\.|[^"\\])*"', re.DOTALL)
_COMMAND = re.compile(r"`(?:\\.|[^`\\])*`", re.DOTALL)
_OPTION_NAME = re.compile(r"--(\w+)", re.ASCII)
_OPTION_VALUE = re.compile(r'"(?:\\.|[^"\\])*"|(?:[^\s/]|/(?![/*]))+')
# Tie-break order of flex's rules, for candidates of equal length.
_NUMERIC = (("float", _FLOAT), ("int", _INT), ("hex", _HEX), ("word", _WORD), ("ipv4", _IPV4))


@dataclass
class _Branch:
    name: str  # the directive that opened it, for messages: "#ifdef STANDARD"
    line: int
    outer_active: bool
    taken: bool  # this branch's condition
    seen_else: bool = False

    @property
    def active(self) -> bool:
        return self.outer_active and self.taken


Defines = Iterable[str] | Mapping[str, str | None]


class Lexer:
    """Scans one script.

    ``defines`` are the names ``#ifdef`` sees, as packetdrill's ``-D NAME``; a
    name given a value (``{"MSS": "1000"}``, ``-D MSS=1000``) also stands for
    that value wherever it appears as a word. A ``--define=NAME[=value]`` line
    in the script adds to them from there on.
    """

    def __init__(self, text: str, path: str, defines: Defines) -> None:
        self.text = text
        self.path = path
        self.defines: dict[str, str | None] = dict(defines) if isinstance(defines, Mapping) else dict.fromkeys(defines)
        self.pos = 0
        self.line = 1
        self.branches: list[_Branch] = []

    def error(self, line: int, message: str) -> PacketdrillError:
        return PacketdrillError(self.path, line, message)

    @property
    def active(self) -> bool:
        return not self.branches or self.branches[-1].active

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        text, n = self.text, len(self.text)
        at_line_start = True
        while True:
            m = _BLANK.match(text, self.pos)
            if m:
                self.pos = m.end()
            if self.pos >= n:
                break
            c = text[self.pos]
            if c == "\n":
                self.line += 1
                self.pos += 1
                at_line_start = True
                continue
            if at_line_start and c == "#":
                self._directive_line()
                if not self.active:
                    self._skip()
                continue
            at_line_start = False
            if c == "/" and text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
                continue
            if c == "/" and text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error(self.line, "unterminated /* comment")
                self._advance_to(end + 2)
                continue
            out.append(self._token(c))
        if self.branches:
            b = self.branches[-1]
            raise self.error(b.line, f"{b.name} is never closed by #endif")
        out.append(Token("eof", "", self.line, n, n))
        return out

    # -- the preprocessor ---------------------------------------------------------------

    def _rest_of_line(self) -> str:
        end = self.text.find("\n", self.pos)
        if end < 0:
            end = len(self.text)
        s = self.text[self.pos : end]
        self.pos = end
        return s

    def _directive_line(self) -> None:
        """A line starting with ``#``: a conditional, or a comment if it names no directive."""
        line = self._rest_of_line()
        m = _DIRECTIVE.match(line)
        assert m is not None
        word, rest = m.group(1), m.group(2)
        if word in UNSUPPORTED_DIRECTIVES:
            raise self.error(self.line, f"unsupported directive #{word} (only #ifdef, #ifndef, #else and #endif)")
        if word not in DIRECTIVES:
            return  # a comment
        self._directive(word, _strip_comment(rest))

    def _directive(self, word: str, arg: str) -> None:
        if word in ("ifdef", "ifndef"):
            name = _NAME.fullmatch(arg)
            if name is None:
                raise self.error(self.line, f"#{word} needs one name, not {arg!r}" if arg else f"#{word} needs a name")
            defined = arg in self.defines
            self.branches.append(_Branch(f"#{word} {arg}", self.line, self.active, defined == (word == "ifdef")))
            return
        if arg:
            raise self.error(self.line, f"unexpected {arg!r} after #{word}")
        if not self.branches:
            raise self.error(self.line, f"#{word} without #ifdef")
        branch = self.branches[-1]
        if word == "else":
            if branch.seen_else:
                raise self.error(self.line, f"second #else for {branch.name} (line {branch.line})")
            branch.seen_else = True
            branch.taken = not branch.taken
        else:
            self.branches.pop()

    def _skip(self) -> None:
        """Lines in a branch not taken: only directives are read, nothing else has to make sense."""
        text = self.text
        while not self.active:
            nl = text.find("\n", self.pos)
            if nl < 0:
                self.pos = len(text)
                return  # tokens() reports the open branch
            self.pos = nl + 1
            self.line += 1
            m = _BLANK.match(text, self.pos)
            if m:
                self.pos = m.end()
            if text.startswith("#", self.pos):
                self._directive_line()

    # -- tokens -------------------------------------------------------------------------

    def _token(self, c: str) -> Token:
        text, pos, line = self.text, self.pos, self.line
        nxt = text[pos + 1 : pos + 2]
        if c == "%" and nxt == "{":
            end = text.find("}%", pos + 2)
            if end < 0:
                raise self.error(line, "unterminated %{ code block (no }%)")
            self._advance_to(end + 2)
            return Token("code", text[pos + 2 : end].strip(), line, pos, end + 2)
        if c == '"':
            m = _STRING.match(text, pos)
            if m is None:
                raise self.error(line, "unterminated string")
            self._advance_to(m.end())
            return Token("string", m.group()[1:-1], line, pos, m.end())
        if c == "`":
            m = _COMMAND.match(text, pos)
            if m is None:
                raise self.error(line, "unterminated `shell command` (no closing backtick)")
            self._advance_to(m.end())
            return Token("command", m.group()[1:-1], line, pos, m.end())
        if c == "-" and nxt == "-":
            return self._option()
        if c == "." and text.startswith("...", pos):
            self.pos = pos + 3
            return Token("ellipsis", "...", line, pos, pos + 3)
        if _NUMBER_OR_WORD.match(text, pos):
            kind, end = max(
                ((k, m.end()) for k, rx in _NUMERIC if (m := rx.match(text, pos))),
                key=lambda km: km[1],  # max() keeps the first of equal lengths: flex's rule order
            )
            self.pos = end
            if kind == "word" and self.defines.get(text[pos:end]) is not None:
                return self._symbol(text[pos:end], line, pos, end)
            return Token(kind, text[pos:end], line, pos, end)
        self.pos = pos + 1
        return Token(c, c, line, pos, pos + 1)

    def _symbol(self, name: str, line: int, start: int, end: int) -> Token:
        """A word defined with a value reads as that value (packetdrill's lexer.l word())."""
        value = self.defines[name] or ""
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"`':
            return Token("string" if value[0] == '"' else "command", value[1:-1], line, start, end)
        for kind, rx in (("hex", _HEX), ("int", _INT)):
            if rx.fullmatch(value):
                return Token(kind, value, line, start, end)
        return Token("word", value, line, start, end)

    def _advance_to(self, end: int) -> None:
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def _option(self) -> Token:
        text, pos, line = self.text, self.pos, self.line
        m = _OPTION_NAME.match(text, pos)
        if m is None:
            self.pos = pos + 1
            return Token("-", "-", line, pos, pos + 1)
        name, end = m.group(1), m.end()
        value = None
        if text.startswith("=", end):
            v = _OPTION_VALUE.match(text, end + 1)
            if v is None:
                raise self.error(line, f"--{name}= needs a value")
            value = v.group()
            if value.startswith('"'):
                value = value[1:-1]
            end = v.end()
        self.pos = end
        if name == "define" and value:
            symbol, eq, symbol_value = value.partition("=")
            self.defines[symbol] = symbol_value if eq else None
        return Token("option", name, line, pos, end, value)


def _strip_comment(s: str) -> str:
    for mark in ("//", "/*"):
        i = s.find(mark)
        if i >= 0:
            s = s[:i]
    return s.strip()


def tokenize(text: str, path: str, defines: Defines) -> list[Token]:
    return Lexer(text, path, defines).tokens()
