"""Coverage-guided fuzz target for the TCP receive path (atheris, libFuzzer underneath).

The input is decoded by tests/tcp_fuzz_world.py, the same decoder the Hypothesis tests use: a state for stack
A's connection (one of the eleven), a pair of configurations, then steps (forged and mutated segments, random
and truncated frames, the peer's real frames, timer firings, socket calls) until the bytes run out. After
every step the invariants of tests/tcp_invariants.py must hold; an exception is a finding.

    .venv/bin/pip install atheris          # or: pip install -e '.[fuzz]'
    .venv/bin/python fuzz/seed_corpus.py   # fuzz/corpus/ from the scenarios' injected frames
    .venv/bin/python fuzz/fuzz_stack.py fuzz/corpus -max_total_time=1800

``FUZZ_FINDINGS=dir``: record each new kind of failure there (the input and its traceback) and go on, instead
of stopping at the first, so one long run reports everything it met.
"""

import hashlib
import os
import sys
import traceback
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

with atheris.instrument_imports(include=["simstack", "tcp_fuzz_world", "tcp_invariants"]):
    import tcp_fuzz_world

MAX_STEPS = 300  # per input: enough to wander from a state, few enough to keep thousands of execs a minute
FINDINGS = os.environ.get("FUZZ_FINDINGS")
_seen: set[str] = set()


def test_one_input(data: bytes) -> None:
    try:
        tcp_fuzz_world.run(tcp_fuzz_world.ByteSource(data), max_steps=MAX_STEPS)
    except Exception as e:
        if FINDINGS is None:
            raise
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{f.filename}:{f.lineno}" for f in reversed(tb) if "/protocols/" in f.filename),
                     f"{tb[-1].filename}:{tb[-1].lineno}")
        kind = f"{type(e).__name__} at {where}"
        if isinstance(e, AssertionError):
            kind += " " + str(e).split(":")[-1][:60]  # one invariant, whichever connection broke it
        if kind in _seen:
            return
        _seen.add(kind)
        name = hashlib.sha1(kind.encode()).hexdigest()[:12]
        out = Path(FINDINGS)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.bin").write_bytes(data)
        (out / f"{name}.txt").write_text(f"{kind}\n\n{traceback.format_exc()}")
        print(f"\n#FINDING {kind} -> {out / name}.bin", file=sys.stderr, flush=True)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
