"""What a header's fields mean outside the codec, declared once per protocol module.

A protocol module declares its wire format as a construct ``Struct``
(``HEADER``) and its value as an immutable ``NamedTuple`` (``Ipv4``). Besides
the codec, three readers need to know about the fields: the scenario language
(engine/scenario/fields.py) builds, decodes and compares frames by field name,
the recorder writes a frame back as fields, and the importer decides which
fields a correct stack must reproduce. Each module exports one ``Header``
(``ipv4.FIELDS``) saying, per field of its value type: the name scenarios use,
the values it takes, how a person reads it, its default, whether ``emit``
computes it, and what an expectation says about it. The readers keep no table
of their own, so a field added here is a field everywhere.

``Header`` checks at import time that it describes every attribute of the
value type exactly once (or names it as unnamed), so the value type and its
description cannot drift apart. The types here are plain data: nothing in
``protocols`` imports the engine.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Any, TypeAlias

_EMPTY: Mapping[str, int] = MappingProxyType({})


class _Unset:
    """Marks a field default not given: the value type's own default, else none at all."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _Unset()


# -- what values a field takes ------------------------------------------------------
@dataclass(frozen=True)
class Int:
    """An unsigned integer of ``bits`` bits, with words a scenario may write for some values.

    ``names_by`` makes the words depend on another field of the same header
    (the attribute, then its value -> words): an ICMP code means one thing
    under "destination unreachable" and another under "time exceeded".
    ``names`` is then every word of every table, which must not clash. ``hex``
    shows values in hex where a person reads them (identifiers, checksums).
    """

    bits: int
    names: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    hex: bool = False
    names_by: tuple[str, Mapping[int, Mapping[str, int]]] | None = None

    def __post_init__(self) -> None:
        if self.names_by is None:
            return
        union: dict[str, int] = dict(self.names)
        for table in self.names_by[1].values():
            for word, value in table.items():
                if union.setdefault(word, value) != value:
                    raise ValueError(f"the word {word!r} names two values")
        object.__setattr__(self, "names", MappingProxyType(union))

    def names_in(self, other: Any) -> Mapping[str, int]:
        """The words for a value of this field where the field ``names_by`` names holds ``other``."""
        if self.names_by is None:
            return self.names
        return self.names_by[1].get(other, _EMPTY)


@dataclass(frozen=True)
class Scalar:
    """A field type with nothing to configure: ``MAC``, ``IPV4_ADDRESS``, ``BOOL``, ``BYTES``."""

    name: str

    def __repr__(self) -> str:
        return self.name


MAC = Scalar("MAC")  # six bytes
IPV4_ADDRESS = Scalar("IPV4_ADDRESS")  # four bytes
BOOL = Scalar("BOOL")
BYTES = Scalar("BYTES")  # any length
TCP_FLAGS = Scalar("TCP_FLAGS")  # the control bits, which scenarios write in tcpdump's letters (S, S., P., R.)
TCP_OPTIONS = Scalar("TCP_OPTIONS")  # a tuple of tcp.Option, which scenarios write in packetdrill's words


@dataclass(frozen=True)
class SeqNum:
    """A 32-bit sequence number, which scenarios write relative to an initial sequence number.

    ``of`` says whose: ``"sender"`` for a segment's own sequence number, ``"receiver"``
    for its acknowledgment number (the other side's sequence space), as packetdrill
    and tcpdump count them.
    """

    of: str

    def __repr__(self) -> str:
        return f"SeqNum({self.of!r})"


SENDER_SEQ = SeqNum("sender")
RECEIVER_SEQ = SeqNum("receiver")

FieldType: TypeAlias = Int | Scalar | SeqNum


# -- what a field is to an expectation, and to emit -----------------------------------
class Expect(Enum):
    """What an expectation written from a captured frame says about a field."""

    DUTY = "duty"  # any correct stack sends this value: every expectation names it
    CHOICE = "choice"  # the sender's own choice (TTL, IP ID): named by `import --strict` and by recordings
    DETAIL = "detail"  # follows from other fields or the configuration (lengths, types): named by recordings
    NEVER = "never"  # checked anyway (checksums), implied (IHL) or fixed by the format: never named


class Computed(Enum):
    """A field ``emit`` fills in when the value holds None."""

    LENGTH = "length"
    CHECKSUM = "checksum"


@dataclass(frozen=True)
class When:
    """A field exists only while attribute ``attr`` holds one of ``values``, or (``values`` None) is not None.

    An ICMP identifier exists in echo messages only; the 802.1Q priority only
    in a tagged frame. A decoded frame lacks the field otherwise, so an
    expectation naming it fails there.
    """

    attr: str
    values: frozenset[Any] | None = None


@dataclass(frozen=True)
class Field:
    """One field: its scenario ``name``, the ``attr`` of the value type it is, and what it means.

    ``default`` is what a frame has when a scenario leaves the field out; it
    is the value type's default unless given, and ``NO_DEFAULT`` when the
    builder decides from the hosts (addresses) or the layers (EtherType).
    ``terse`` leaves the field out of a written inject while it holds that
    default. ``when`` limits where a decoded frame has the field at all.
    ``measures`` makes the field a read-only view, the length of the bytes at
    ``attr`` (TCP has no length field, but a scenario may name a data length);
    another field describes ``attr`` itself.
    """

    name: str
    attr: str
    type: FieldType
    expect: Expect = Expect.DUTY
    computed: Computed | None = None
    default: Any = NO_DEFAULT
    terse: bool = False
    when: When | None = None
    measures: bool = False
    layer: str = ""  # set by Header

    @property
    def key(self) -> str:
        """The flat name scenarios and diffs use: ``ipv4.id``."""
        return f"{self.layer}.{self.name}"


class Header:
    """The fields of one header in the order scenarios list and diffs print them, over its value type.

    ``unnamed`` lists the value type's attributes the scenario language does
    not name (the payload, which is the next layer; reserved bits). Anything
    else missing or extra is a ``TypeError`` at import time.
    """

    def __init__(self, layer: str, value: type[Any], fields: Sequence[Field], unnamed: Iterable[str] = ()) -> None:
        attrs: tuple[str, ...] = value._fields  # a NamedTuple's, in its order
        type_defaults: Mapping[str, Any] = value._field_defaults
        self.unnamed: tuple[str, ...] = tuple(unnamed)
        described = [f.attr for f in fields if not f.measures] + list(self.unnamed)
        if sorted(described) != sorted(attrs):
            raise TypeError(f"{layer}: the fields describe {sorted(described)}, {value.__name__} has {sorted(attrs)}")
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise TypeError(f"{layer}: duplicate field names in {names}")
        resolved = []
        for f in fields:
            if f.measures and f.attr not in attrs:
                raise TypeError(f"{layer}.{f.name} measures {f.attr!r}, which {value.__name__} lacks")
            depends = [f.when.attr] if f.when else []
            if isinstance(f.type, Int) and f.type.names_by is not None:
                depends.append(f.type.names_by[0])
            for other in depends:
                if other not in attrs:
                    raise TypeError(f"{layer}.{f.name} depends on {other!r}, which {value.__name__} lacks")
            default = f.default if f.default is not NO_DEFAULT else type_defaults.get(f.attr, NO_DEFAULT)
            resolved.append(replace(f, default=default, layer=layer))
        self.layer = layer
        self.value = value
        self.fields: tuple[Field, ...] = tuple(resolved)
        self.by_name: Mapping[str, Field] = MappingProxyType({f.name: f for f in self.fields})
        self.by_attr: Mapping[str, Field] = MappingProxyType({f.attr: f for f in self.fields if not f.measures})
        self.index: Mapping[str, int] = MappingProxyType({a: i for i, a in enumerate(attrs)})

    def __repr__(self) -> str:
        return f"Header({self.layer!r}, {self.value.__name__}, {', '.join(f.name for f in self.fields)})"
