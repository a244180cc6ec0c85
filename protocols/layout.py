"""Fast codecs derived from the construct declarations, not written beside them.

Each header is declared once, as a construct ``Struct`` (``ipv4.HEADER``); that
declaration stays the single source of truth. Running it, even compiled, costs
microseconds per header, and nearly all of that is construct's machinery (a
``BytesIO`` per parse, a ``Container`` per level, a closure per field), not the
work the fields describe. The leading fixed-size part of a header is exactly
what one ``struct.Struct`` does in C, so this module reads the declaration at
import time and turns that part into one:

- ``FormatField`` integers (``Int8ub``, ``Int16ub``, ``Int32ub``, ...) become
  their struct code;
- ``Bytes(n)`` with a constant ``n`` becomes ``"ns"``;
- ``Default(...)`` and ``Const(...)`` around those keep their meaning: a
  constant default is filled in by ``build``, a computed one (a ``this``
  expression) is left to the protocol module, which computes it the same way
  (``tests/test_layout.py`` holds both to construct's own build); a constant is
  checked on parse.

The run ends at the first field a fixed struct cannot express (``Bytes`` sized
by the context, ``If``, ``Switch``, ``GreedyBytes``, adapters such as ``Enum``,
anything unnamed). Those stay with the protocol module, which names them in
``derive(..., tail=...)``; a declaration whose remainder is not what the module
handles is refused with ``LayoutError`` at import time, so a change to a
declaration can never be half-followed by its fast codec.

There is one codec at run time, this one. The declaration stays the
reference: tests hold every protocol's ``parse``/``emit`` to construct's own
``HEADER.parse``/``HEADER.build``, and the replay benchmark patches a
construct-compiled codec in for its baseline.
"""

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from construct import Bytes, Const, Construct, Default, FormatField, Renamed, Struct

from .errors import Malformed


class LayoutError(TypeError):
    """The declaration cannot be derived the way the caller asked; raised at import time."""


class _Missing:
    """Marks a field with no default (or no constant)."""

    def __repr__(self) -> str:
        return "MISSING"


class _Computed:
    """Marks a ``Default`` whose value is an expression of the context."""

    def __repr__(self) -> str:
        return "COMPUTED"


MISSING: Any = _Missing()
COMPUTED: Any = _Computed()

_ONE_BYTE = frozenset("Bb?")  # struct codes where byte order does not matter


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    code: str  # struct code without byte order: "H", "6s"
    size: int
    default: Any = MISSING  # a constant, COMPUTED, or MISSING
    const: Any = MISSING


def _leaf(sc: Construct) -> tuple[str, str, int] | None:
    """(byte order, struct code, size) of a fixed-size field, or None."""
    kind = type(sc)
    if kind is FormatField:
        order, code = sc.fmtstr[0], sc.fmtstr[1:]
        return order, code, struct.calcsize(sc.fmtstr)
    if kind is Bytes:
        n = sc.length
        if type(n) is int and n >= 0:
            return "", f"{n}s", n
    return None


def _field(sc: Construct) -> tuple[str, Field] | None:
    """The byte order and Field for one named member, or None when not derivable."""
    if type(sc) is not Renamed or not isinstance(sc.name, str) or sc.parsed is not None:
        return None
    inner = unwrap(sc.subcon)
    default: Any = MISSING
    const: Any = MISSING
    # Wrappers that keep the bytes as they are: Default (build-side only) and Const.
    while True:
        kind = type(inner)
        if kind is Default and default is MISSING:
            default = COMPUTED if callable(inner.value) else inner.value
        elif kind is Const and const is MISSING:
            const = inner.value
        else:
            break
        inner = inner.subcon
    leaf = _leaf(inner)
    if leaf is None:
        return None
    order, code, size = leaf
    return order, Field(sc.name, code, size, default, const)


class Layout:
    """A run of fixed-size fields as one ``struct.Struct``.

    ``unpack_from(buffer, offset=0)`` gives the field values in declaration
    order and ``pack(*values)`` builds them; both are the struct's own methods
    unless a field needs a check (a ``Const`` on parse, a ``Bytes(n)`` length
    on build), so the hot path stays in C. ``unpack_from`` never reads short:
    struct raises ``struct.error``; ``parse`` checks first and raises
    ``Malformed("truncated")`` like the protocol modules do.
    """

    def __init__(self, fields: Sequence[Field], order: str, tail: Sequence[str] = ()) -> None:
        if not fields:
            raise LayoutError("no fixed-size fields to derive")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise LayoutError(f"duplicate field names in {names}")
        self.fields: tuple[Field, ...] = tuple(fields)
        self.names: tuple[str, ...] = tuple(names)
        self.order = order
        self.tail: tuple[str, ...] = tuple(tail)
        self.format = order + "".join(f.code for f in fields)
        self.struct = struct.Struct(self.format)
        self.size: int = self.struct.size
        self.unpack_from: Callable[..., tuple[Any, ...]] = self._checked_unpack() or self.struct.unpack_from
        self.pack: Callable[..., bytes] = self._checked_pack() or self.struct.pack

    def __repr__(self) -> str:
        return f"Layout({self.format!r}, {', '.join(self.names)})"

    def _checked_unpack(self) -> Callable[..., tuple[Any, ...]] | None:
        consts = [(i, f.name, f.const) for i, f in enumerate(self.fields) if f.const is not MISSING]
        if not consts:
            return None
        raw = self.struct.unpack_from

        def unpack_from(buffer: bytes, offset: int = 0) -> tuple[Any, ...]:
            values = raw(buffer, offset)
            for i, name, want in consts:
                if values[i] != want:
                    raise Malformed("bad_constant", f"{name} is {values[i]!r}, want {want!r}")
            return values

        return unpack_from

    def _checked_pack(self) -> Callable[..., bytes] | None:
        # struct pads or cuts an "ns" field silently; construct's Bytes(n) refuses a
        # wrong length (its compiled build writes whatever it is given), and so does this.
        sized = [(i, f.name, f.size) for i, f in enumerate(self.fields) if f.code.endswith("s")]
        consts = [(i, f.name, f.const) for i, f in enumerate(self.fields) if f.const is not MISSING]
        if not sized and not consts:
            return None
        raw = self.struct.pack

        def pack(*values: Any) -> bytes:
            for i, name, n in sized:
                if len(values[i]) != n:
                    raise ValueError(f"{name} must be {n} bytes, got {len(values[i])}")
            for i, name, want in consts:
                if values[i] != want:
                    raise ValueError(f"{name} is the constant {want!r}, got {values[i]!r}")
            return raw(*values)

        return pack

    def __add__(self, other: "Layout") -> "Layout":
        """The two runs back to back (ICMP's common head plus one type's rest of header)."""
        if not isinstance(other, Layout):
            return NotImplemented
        order = _join_orders(self.order, self.fields, other.order, other.fields)
        if order is None:
            raise LayoutError(f"cannot join {self.format!r} and {other.format!r}: byte orders differ")
        return Layout(self.fields + other.fields, order, other.tail)

    def parse(self, data: bytes, offset: int = 0) -> dict[str, Any]:
        """Field name to value, after the length check; for tests and cold paths."""
        if len(data) - offset < self.size:
            raise Malformed("truncated", f"{len(data) - offset} bytes, {self.size} needed")
        return dict(zip(self.names, self.unpack_from(data, offset), strict=True))

    def fill(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """``values`` with None replaced the way construct's build would, where that is a constant."""
        if len(values) != len(self.fields):
            raise ValueError(f"{len(self.fields)} values needed, got {len(values)}")
        out = list(values)
        for i, f in enumerate(self.fields):
            if out[i] is None:
                if f.const is not MISSING:
                    out[i] = f.const
                elif f.default is not MISSING and f.default is not COMPUTED:
                    out[i] = f.default
                else:
                    raise ValueError(f"{f.name} has no value and no constant default")
        return tuple(out)

    def build(self, values: Mapping[str, Any]) -> bytes:
        """Build from a mapping, filling constant defaults and constants; for tests and cold paths."""
        return self.pack(*self.fill([values.get(name) for name in self.names]))


def _join_orders(a: str, fa: Sequence[Field], b: str, fb: Sequence[Field]) -> str | None:
    multi_a = any(f.code not in _ONE_BYTE and not f.code.endswith("s") for f in fa)
    multi_b = any(f.code not in _ONE_BYTE and not f.code.endswith("s") for f in fb)
    if not multi_a:
        return b
    if not multi_b:
        return a
    return a if a == b else None


def unwrap(sc: Construct) -> Construct:
    """The construct inside any ``Renamed`` labels."""
    while type(sc) is Renamed:
        sc = sc.subcon
    return sc


def member(declaration: Construct, name: str) -> Construct:
    """The named member of a ``Struct``, unwrapped (``member(ethernet.HEADER, "tag")``)."""
    decl = unwrap(declaration)
    if type(decl) is not Struct:
        raise LayoutError(f"{decl!r} is not a Struct")
    for sc in decl.subcons:
        if sc.name == name:
            return unwrap(sc)
    raise LayoutError(f"no member {name!r} in {[sc.name for sc in decl.subcons]}")


def derive(declaration: Construct, tail: Mapping[str, Any] | None = None) -> Layout:
    """The leading fixed-size run of a ``Struct`` declaration, as a ``Layout``.

    ``tail`` names, in order, every member after the run and what it must be:
    a construct class (``IfThenElse``, ``Bytes``, ``Switch``) or a singleton
    (``GreedyBytes``). Anything else after the run, an empty run, an unnamed
    member, or byte orders that one struct cannot mix raise ``LayoutError``.
    """
    decl = unwrap(declaration)
    if type(decl) is not Struct:
        raise LayoutError(f"cannot derive from {type(decl).__name__}: a Struct declaration is needed")
    fields: list[Field] = []
    order = ""
    rest = list(decl.subcons)
    while rest:
        found = _field(rest[0])
        if found is None:
            break
        field_order, f = found
        if f.code not in _ONE_BYTE and not f.code.endswith("s"):
            if order and field_order != order:
                break  # one struct has one byte order; the run ends here
            order = field_order
        fields.append(f)
        rest.pop(0)
    if not fields:
        first = rest[0] if rest else None
        raise LayoutError(f"no fixed-size leading field to derive (first member: {first!r})")
    want = dict(tail or {})
    have = [sc.name for sc in rest]
    if have != list(want):
        raise LayoutError(f"fixed run ends before {have}; the caller handles {list(want)}")
    for sc in rest:
        kind = want[sc.name]
        inner = unwrap(sc)
        ok = isinstance(inner, kind) if isinstance(kind, type) else inner is kind
        if not ok:
            raise LayoutError(f"member {sc.name!r} is {type(inner).__name__}, the caller handles {kind!r}")
    return Layout(fields, order or ">", [sc.name for sc in rest])
