"""``data: {quote: {step: N}}``: an ICMP error's quoted datagram, taken from a frame an earlier step injected.

An ICMP error carries the start of the datagram that caused it (RFC 792),
and writing that quote out as hex by hand copies bytes the scenario already
describes. A quote names the inject step instead, by number (as failure
reports count steps, from 1) or by its ``name:``; the expectation then wants
that step's IPv4 datagram cut as the stack cuts its quotes: at most 548 bytes,
so that the error fits in 576 (RFC 1812 4.3.2.3).
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from simstack.protocols import ethernet, icmp, ipv4
from simstack.protocols.errors import Malformed
from simstack.protocols.stack import ICMP_ERROR_MAX

if TYPE_CHECKING:
    from .loader import ScenarioError, Step, _Checker

QUOTE_MAX = ICMP_ERROR_MAX - ipv4.MIN_HEADER - icmp.HEADER_LEN


def resolve(chk: "_Checker", spec: Any, earlier: "list[Step]", line: int) -> Any:
    """``spec`` (an expect's fields) with ``icmp.data: {quote: ...}`` replaced by the quoted bytes as hex."""
    layer = spec.get("icmp") if isinstance(spec, Mapping) else None
    if not isinstance(layer, Mapping):
        return spec
    data = layer.get("data")
    if not (isinstance(data, Mapping) and set(data) == {"quote"}):
        return spec
    where = getattr(layer, "key_lines", {}).get("data", line)
    step = _referenced(chk, data["quote"], earlier, where)
    return {**spec, "icmp": {**layer, "data": {"hex": quoted(step.frames[0]).hex()}}}


def _referenced(chk: "_Checker", ref: Any, earlier: "list[Step]", line: int) -> "Step":
    if not (isinstance(ref, Mapping) and set(ref) == {"step"}):
        raise _fail(chk, line, f"quote wants {{step: N}} or {{step: NAME}}, got {ref!r}")
    which = ref["step"]
    if isinstance(which, bool) or not isinstance(which, int | str):
        raise _fail(chk, line, f"quote: step must be a step number or a step's name, got {which!r}")
    if isinstance(which, int):
        if not 1 <= which <= len(earlier):
            raise _fail(chk, line, f"quote: step {which} is not an earlier step (this is step {len(earlier) + 1})")
        step = earlier[which - 1]
    else:
        named = [s for s in earlier if s.name == which]
        if not named:
            raise _fail(chk, line, f"quote: no earlier step is named {which!r}")
        step = named[-1]
    if step.kind != "inject" or not step.frames:
        raise _fail(chk, line, f"quote: step {which} is an {step.kind} step; a quote takes the frame an inject step sent")
    if step.build is not None:
        raise _fail(chk, line, f"quote: step {which} is a TCP segment, built with the sequence numbers of the moment it "
                               "runs; quote a frame whose bytes the file fixes")
    try:
        quoted(step.frames[0])
    except Malformed as e:
        raise _fail(chk, line, f"quote: step {which} did not inject an IPv4 datagram ({e})") from None
    return step


def quoted(frame: bytes) -> bytes:
    """The part of ``frame``'s IPv4 datagram that the stack's ICMP errors quote."""
    eth = ethernet.parse(frame)
    if eth.ethertype != ethernet.TYPE_IPV4:
        raise Malformed("not_ipv4", f"EtherType {eth.ethertype:#06x}")
    ip = ipv4.parse(eth.payload, verify_checksum=False)
    raw = eth.payload[: ip.total_length or len(eth.payload)]
    return raw[:QUOTE_MAX]


def _fail(chk: "_Checker", line: int, message: str) -> "ScenarioError":
    return chk.fail(line, message)
