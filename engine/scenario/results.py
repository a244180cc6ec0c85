"""Replay verdicts for machines: ``--json`` (one object a line) and ``--junit-xml`` (what CI servers read).

A CI server shows JUnit XML as a test report; a script reads JSON lines
without parsing the human summary. Both carry the same facts per scenario:
its path, the verdict (``pass``, ``fail``, or ``invalid`` for a file that
could not be run), the failing step and the line it stands on, the message,
and how long the file took in real time.
"""

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

_STEP = re.compile(r":(\d+): step (\d+) \((\w[\w ]*)\)")
_LINE = re.compile(r"^.*?:(\d+): ")


@dataclass(frozen=True)
class Outcome:
    path: str
    verdict: str  # pass, fail, invalid, skip
    duration: float  # seconds of real time
    message: str = ""  # the failure report, or the invalid file's FILE:LINE: message

    @property
    def step(self) -> int | None:
        m = _STEP.search(self.message)
        return int(m.group(2)) if m else None

    @property
    def line(self) -> int | None:
        m = _STEP.search(self.message) or _LINE.match(self.message)
        return int(m.group(1)) if m and int(m.group(1)) > 0 else None

    def as_json(self) -> str:
        return json.dumps({"path": self.path, "verdict": self.verdict, "step": self.step, "line": self.line,
                           "message": self.message, "duration": round(self.duration, 6)})


def write_junit(outcomes: list[Outcome], path: str) -> None:
    """One ``testsuite`` of one ``testcase`` per file; a failed file has ``failure``, an invalid one ``error``."""
    suite = ET.Element("testsuite", {
        "name": "simstack replay", "tests": str(len(outcomes)),
        "failures": str(sum(o.verdict == "fail" for o in outcomes)),
        "errors": str(sum(o.verdict == "invalid" for o in outcomes)),
        "skipped": str(sum(o.verdict == "skip" for o in outcomes)), "time": f"{sum(o.duration for o in outcomes):.6f}",
    })
    for o in outcomes:
        case = ET.SubElement(suite, "testcase", {"classname": "simstack.replay", "name": o.path, "file": o.path,
                                                 "time": f"{o.duration:.6f}"})
        if o.line is not None:
            case.set("line", str(o.line))
        if o.verdict == "skip":
            ET.SubElement(case, "skipped", {"message": o.message})
        elif o.verdict != "pass":
            first = o.message.splitlines()[0] if o.message else o.verdict
            child = ET.SubElement(case, "failure" if o.verdict == "fail" else "error", {"message": first})
            child.text = o.message
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
