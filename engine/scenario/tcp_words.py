"""TCP in a scenario's words: control bits in tcpdump's letters, options in packetdrill's.

``S`` is a SYN, ``S.`` a SYN-ACK, ``.`` a bare ACK, ``P.`` data with PSH and
ACK, ``F.`` a FIN, ``R`` and ``R.`` resets; letters combine in any order
(``FP.``) and are printed in tcpdump's order (F S R P . U E W). An option list
is written as packetdrill writes it between ``<`` and ``>``, one option per
item: ``[mss 1460, sackOK, TS val 100 ecr 0, nop, wscale 7]``. In an
expectation ``*`` stands for a number the stack chooses (``TS val * ecr 0``),
and ``any`` (or a quoted ``"*"``) for the whole list.
"""

from collections.abc import Sequence
from typing import Any

from simstack.protocols.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    OPT_EOL,
    OPT_MSS,
    OPT_NOP,
    OPT_SACK,
    OPT_SACK_PERMITTED,
    OPT_TIMESTAMP,
    OPT_WSCALE,
    PSH,
    RST,
    SYN,
    URG,
    Option,
)

# tcpdump's print order (print-tcp.c, tcp_flag_values): FIN, SYN, RST, PUSH, ACK, URG, ECE, CWR.
FLAG_LETTERS: tuple[tuple[str, int], ...] = (
    ("F", FIN), ("S", SYN), ("R", RST), ("P", PSH), (".", ACK), ("U", URG), ("E", ECE), ("W", CWR),
)
_BY_LETTER = dict(FLAG_LETTERS)
NO_FLAGS = "none"  # tcpdump's word for a segment with no control bit set


def parse_flags(text: str) -> int:
    """``"S."`` -> SYN|ACK. ValueError for an unknown or repeated letter."""
    if text == NO_FLAGS:
        return 0
    flags = 0
    for letter in text:
        bit = _BY_LETTER.get(letter)
        if bit is None:
            raise ValueError(f"{letter!r} is not a flag letter; letters are {' '.join(_BY_LETTER)} ('.' is ACK), "
                             f"or {NO_FLAGS!r}")
        if flags & bit:
            raise ValueError(f"flag {letter!r} given twice in {text!r}")
        flags |= bit
    if not text:
        raise ValueError(f"no flag letters; write {NO_FLAGS!r} for a segment without control bits")
    return flags


def flags_text(flags: int) -> str:
    return "".join(letter for letter, bit in FLAG_LETTERS if flags & bit) or NO_FLAGS


class _Wildcard:
    """``*``: whatever the stack chose."""

    _instance: "_Wildcard | None" = None

    def __new__(cls) -> "_Wildcard":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "*"

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 42


ANY = _Wildcard()


def _matches(want: Any, have: Any) -> bool:
    if want is ANY:
        return True
    if isinstance(want, tuple) and isinstance(have, tuple):
        return len(want) == len(have) and all(_matches(w, h) for w, h in zip(want, have, strict=True))
    return bool(want == have)


def _has_wildcard(value: Any) -> bool:
    if value is ANY:
        return True
    return isinstance(value, tuple) and any(_has_wildcard(v) for v in value)


class OptionsPattern:
    """An option list with ``*`` in it: equal to every option list it matches, so a plain ``==`` compares.

    ``options`` None is ``any``: every list, the empty one included.
    """

    __slots__ = ("options",)

    def __init__(self, options: tuple[Option, ...] | None) -> None:
        self.options = options

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OptionsPattern):
            return self.options == other.options
        if self.options is None:
            return True
        if not isinstance(other, tuple) or len(other) != len(self.options):
            return False
        return all(isinstance(h, tuple) and w.kind == h[0] and _matches(w.value, h[1])
                   for w, h in zip(self.options, other, strict=True))

    def __hash__(self) -> int:
        return hash(self.options)

    def __repr__(self) -> str:
        return "any" if self.options is None else options_text(self.options)


ANY_OPTIONS = OptionsPattern(None)
Options = tuple[Option, ...] | OptionsPattern


def _number(word: str, what: str, bits: int) -> Any:
    if word == "*":
        return ANY
    try:
        value = int(word, 0)
    except ValueError:
        raise ValueError(f"{what}: {word!r} is not a number") from None
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{what}: {value} does not fit in {bits} bits")
    return value


def parse_option(text: str) -> Option:
    """One option in packetdrill's words: ``nop``, ``eol``, ``mss N``, ``wscale N``, ``sackOK``,
    ``sack L:R ...``, ``TS val N ecr N``, or ``opt KIND [HEX]`` for any other kind."""
    words = text.split()
    if not words:
        raise ValueError("an empty option")
    name, args = words[0], words[1:]

    def arity(n: int, form: str) -> None:
        if len(args) != n:
            raise ValueError(f"{text!r}: write it as {form!r}")

    if name == "nop":
        arity(0, "nop")
        return Option(OPT_NOP)
    if name == "eol":
        arity(0, "eol")
        return Option(OPT_EOL)
    if name == "sackOK":
        arity(0, "sackOK")
        return Option(OPT_SACK_PERMITTED)
    if name == "mss":
        arity(1, "mss N")
        return Option(OPT_MSS, _number(args[0], "mss", 16))
    if name == "wscale":
        arity(1, "wscale N")
        return Option(OPT_WSCALE, _number(args[0], "wscale", 8))
    if name == "TS":
        if len(args) != 4 or args[0] != "val" or args[2] != "ecr":
            raise ValueError(f"{text!r}: write it as 'TS val N ecr N'")
        return Option(OPT_TIMESTAMP, (_number(args[1], "TS val", 32), _number(args[3], "TS ecr", 32)))
    if name == "sack":
        if not 1 <= len(args) <= 4:
            raise ValueError(f"{text!r}: write it as 'sack L:R' with one to four blocks")
        blocks = []
        for block in args:
            left, sep, right = block.partition(":")
            if not sep:
                raise ValueError(f"{text!r}: a SACK block is LEFT:RIGHT, got {block!r}")
            blocks.append((_number(left, "sack", 32), _number(right, "sack", 32)))
        return Option(OPT_SACK, tuple(blocks))
    if name == "opt":
        if not 1 <= len(args) <= 2:
            raise ValueError(f"{text!r}: write it as 'opt KIND' or 'opt KIND HEX'")
        kind = _number(args[0], "opt", 8)
        if kind is ANY:
            raise ValueError(f"{text!r}: the kind cannot be '*'")
        try:
            data = bytes.fromhex(args[1]) if len(args) == 2 else b""
        except ValueError:
            raise ValueError(f"{text!r}: bad hex {args[1]!r}") from None
        return Option(kind, data)
    raise ValueError(f"unknown option {name!r}; options are nop, eol, mss N, wscale N, sackOK, sack L:R, "
                     "TS val N ecr N, opt KIND HEX")


def parse_options(value: Any) -> Options:
    """A YAML list of option words, or ``any`` / ``"*"`` for any list at all."""
    if value in ("any", "*"):
        return ANY_OPTIONS
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"want a list of options like [mss 1460, nop, wscale 7], or any; got {value!r}")
    options = tuple(parse_option(v) for v in value)
    if any(_has_wildcard(o.value) for o in options):
        return OptionsPattern(options)
    return options


def _word(value: Any) -> str:
    return "*" if value is ANY else str(value)


def option_text(opt: Option) -> str:
    kind, value = opt
    if isinstance(value, (bytes, bytearray)):
        return f"opt {kind} {value.hex()}".rstrip()
    if kind == OPT_NOP:
        return "nop"
    if kind == OPT_EOL:
        return "eol"
    if kind == OPT_SACK_PERMITTED:
        return "sackOK"
    if kind == OPT_MSS:
        return f"mss {_word(value)}"
    if kind == OPT_WSCALE:
        return f"wscale {_word(value)}"
    if kind == OPT_TIMESTAMP:
        return f"TS val {_word(value[0])} ecr {_word(value[1])}"
    if kind == OPT_SACK:
        return "sack " + " ".join(f"{_word(left)}:{_word(right)}" for left, right in value)
    return f"opt {kind}"


def options_text(options: Sequence[Option], sep: str = ", ") -> str:
    return "[" + sep.join(option_text(o) for o in options) + "]"


def has_wildcard(options: Options) -> bool:
    return isinstance(options, OptionsPattern)
