"""Seed fuzz/corpus/ with the TCP segments the scenarios inject, written as inputs fuzz_stack.py decodes.

Every scenario under scenarios/ runs (engine/scenario/runner.py) with a trace that keeps the frames going into
the stack; each TCP segment among them becomes a "raw TCP, rebased" step (its sequence and acknowledgment
numbers relative to the ISNs of that scenario, its ports the target's), with the scenario's pauses between
them as timer steps. Each scenario gives a few inputs, each starting A's connection in a different state, so
the fuzzer begins from segments that already reach deep into the state machine. Generated at run time; the
corpus directory is not committed.

    .venv/bin/python fuzz/seed_corpus.py [--out fuzz/corpus]
"""

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import tcp_fuzz_world as world  # noqa: E402

from simstack.engine.scenario.loader import ScenarioError, load  # noqa: E402
from simstack.engine.scenario.runner import Runner  # noqa: E402

MAX_SEGMENTS = 40


def tcp_segments(path: Path) -> list[tuple[float, str, bytes]]:
    """(time, direction, TCP bytes) of every TCP segment in and out of the scenario's stack."""
    seen: list[tuple[float, str, bytes]] = []

    def trace(t: float, direction: str, frame: bytes) -> None:
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[23] == 6:
            ihl = (frame[14] & 0x0F) * 4
            end = 14 + int.from_bytes(frame[16:18], "big")
            seen.append((t, direction.split()[-1], frame[14 + ihl:end]))

    try:
        Runner(load(path), trace=trace).run()
    except (ScenarioError, OSError, ValueError):
        return []
    return seen


def encode(segments: list[tuple[float, str, bytes]], state: int, config: int) -> bytes:
    """The input that builds ``state`` under ``config`` and then injects the segments, rebased."""
    sink = world.ByteSink()
    sink.num(0, len(world.STATES) - 1, state)
    sink.num(0, len(world.CONFIGS) - 1, config)
    sink.num(0, 255, 1)  # seed
    sink.num(0, 2, 0)  # no data before
    sink.num(0, 1, config % 2)  # ISNs near the 2^32 wrap, every other input
    peer_isn = next((int.from_bytes(s[4:8], "big") for _, d, s in segments if d == "<" and s[13] & 0x02), 0)
    our_isn = next((int.from_bytes(s[4:8], "big") for _, d, s in segments if d == ">" and s[13] & 0x02), 0)
    last = segments[0][0] if segments else 0.0
    n = 0
    for t, direction, seg in segments:
        if direction != "<" or len(seg) < 20:
            continue
        if t > last:
            sink.num(0, world.OPS - 1, 12)  # time passes, as in the scenario
            sink.num(0, 3, 0)
            sink.num(0, 5000, min(5000, round((t - last) * 1000)))
            last = t
        raw = bytearray(seg[:world.RAW_TCP_MAX])
        seq = (int.from_bytes(raw[4:8], "big") - peer_isn) & 0xFFFFFFFF
        ack = (int.from_bytes(raw[8:12], "big") - our_isn) & 0xFFFFFFFF
        raw[4:12] = seq.to_bytes(4, "big") + ack.to_bytes(4, "big")
        sink.num(0, world.OPS - 1, world.OPS - 1)
        sink.num(0, 4, 3)  # raw TCP, rebased
        sink.num(20, world.RAW_TCP_MAX, len(raw))
        sink.blob(bytes(raw))
        sink.num(0, world.OPS - 1, 9)  # and whatever B had in flight
        n += 1
        if n >= MAX_SEGMENTS:
            break
    return bytes(sink.out) if n else b""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "fuzz" / "corpus")
    ap.add_argument("--states", type=int, default=3, help="inputs per scenario, each from another state")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    paths = sorted((ROOT / "scenarios").rglob("*.yaml"))
    for i, path in enumerate(paths):
        segments = tcp_segments(path)
        if not segments:
            continue
        for k in range(args.states):
            state = (i + k * 4) % len(world.STATES)
            data = encode(segments, state, (i + k) % len(world.CONFIGS))
            if data:
                (args.out / hashlib.sha1(data).hexdigest()).write_bytes(data)
                written += 1
    print(f"{written} inputs from {len(paths)} scenarios in {args.out}")


if __name__ == "__main__":
    main()
