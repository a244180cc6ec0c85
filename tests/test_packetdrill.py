"""packetdrill scripts as simstack runs them: replay, import, SKIP, profiles, and the script's lines in every error.

The project's own scripts (tests/packetdrill/*.pkt) pass; changing one expected value
in them (an ACK, a window, a flag, a system call's result, a SACK block, a TS val)
makes them fail with that field in the report. tests/test_packetdrill_suite.py runs
the public suites' sample the same way.
"""

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from simstack.engine.scenario.loader import load
from simstack.engine.scenario.packetdrill import parse
from simstack.engine.scenario.packetdrill_profiles import PROFILES, SysctlError, apply_sysctls, detect, parse_command
from simstack.engine.scenario.packetdrill_translate import Skip, load_pkt, translate
from simstack.engine.scenario.replay import run_files
from simstack.engine.scenario.runner import Runner

HERE = Path(__file__).parent / "packetdrill"
OWN = sorted(HERE.glob("*.pkt"))
SACK = HERE / "freebsd-sack-dsack.pkt"
TS = HERE / "linux-timestamps.pkt"
TIME_WAIT = HERE / "freebsd-time-wait-rst.pkt"


def replay(*paths: Path | str, profile: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_files([str(p) for p in paths], out=out, err=err, profile=profile)
    return code, out.getvalue(), err.getvalue()


def line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def test_own_scripts_pass() -> None:
    assert len(OWN) >= 3
    code, out, err = replay(*OWN)
    assert (code, err) == (0, ""), out + err
    assert out.splitlines()[-1] == f"{len(OWN)} passed, 0 failed, 0 skipped"


# (script, the line as written, the same line with one expected value changed, the field the report names)
MUTATIONS = [
    (SACK, "> .   1:1(0)   ack 201 win 65500\n", "> .   1:1(0)   ack 202 win 65500\n", "tcp.ack"),
    (SACK, "> .   1:1(0)   ack 202 win 65535", "> .   1:1(0)   ack 202 win 65534", "tcp.win"),
    (SACK, "> F.  1:1(0)   ack 202 win 65535", "> .  1:1(0)   ack 202 win 65535", "tcp.flags"),
    (SACK, "recv(4, ..., 1000, 0) = 200", "recv(4, ..., 1000, 0) = 199", "len"),
    (SACK, "<nop,nop,sack 1:101>", "<nop,nop,sack 1:102>", "tcp.options"),
    (SACK, "SO_RCVBUF, [65700]", "SO_RCVBUF, [65536]", "rcvbuf"),
    (TS, "<nop,nop,TS val 400 ecr 900>", "<nop,nop,TS val 450 ecr 900>", "TS val"),
    (TS, "write(3, ..., 1000) = 1000", "write(3, ..., 1000) = 999", "returns"),
    (TIME_WAIT, "grep -c TIME_WAIT | grep 1", "grep -c TIME_WAIT | grep 0", "sockstat"),
    (TIME_WAIT, "F_GETFL) = 0x06", "F_GETFL) = 0x02", "getblocking"),
]


@pytest.mark.parametrize(("script", "old", "new", "field"), MUTATIONS,
                         ids=[f"{s.stem}-{f}" for s, _, _, f in MUTATIONS])
def test_changing_one_expected_value_fails(tmp_path: Path, script: Path, old: str, new: str, field: str) -> None:
    text = script.read_text()
    assert text.count(old) == 1, old
    bad = tmp_path / script.name
    bad.write_text(text.replace(old, new))
    code, out, err = replay(bad)
    assert code == 1 and err == "", out + err
    line = text[:text.index(old)].count("\n") + 1
    assert out.startswith(f"FAIL {bad}\n{bad}:{line}: step "), out  # the report points at the script's line
    assert field in out, out
    assert out.splitlines()[-1] == "0 passed, 1 failed, 0 skipped"


@pytest.mark.parametrize(("body", "what"), [
    ("--ip_version=ipv6\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n", "IP version ipv6 (simstack speaks IPv4)"),
    ("0 `tcpdrop -s TIME_WAIT`\n+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n", "shell command `tcpdrop -s TIME_WAIT`"),
    ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 %{ assert tcpi_rto == 1 }%\n", "%{ python }% block (TCP_INFO)"),
    ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0\n",
     "setsockopt TCP_FASTOPEN"),
    ("0 `sysctl -w net.inet.tcp.ecn.enable=1`\n+0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n",
     "sysctl net.inet.tcp.ecn.enable=1"),
    ("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0) win 1000 <FO abcd1234,nop,nop>\n", "TCP Fast Open"),
])
def test_what_simstack_does_not_offer_is_skipped_by_name(tmp_path: Path, body: str, what: str) -> None:
    script = tmp_path / "x.pkt"
    script.write_text(body)
    code, out, err = replay(script)
    assert (code, err) == (0, ""), out + err
    assert out == f"SKIP {script}: unsupported {what}\n0 passed, 0 failed, 1 skipped\n"


def test_a_script_that_cannot_be_read_exits_2_with_its_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pkt"
    broken.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 close(3) = 0\n+0 > Q 0:0(0)\n")
    unopened = tmp_path / "unopened.pkt"
    unopened.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n\n+0 close(5) = 0\n")
    code, out, err = replay(broken, unopened, SACK)
    assert code == 2
    assert re.match(rf"{re.escape(str(broken))}:3: .*\n{re.escape(str(unopened))}:3: close\(5\): no such socket", err), err
    assert out.splitlines()[-1] == "1 passed, 2 failed, 0 skipped"


def test_the_profile_comes_from_the_script_and_can_be_overridden() -> None:
    assert translate(parse(SACK.read_text(), str(SACK))).profile == "freebsd"
    assert translate(parse(TS.read_text(), str(TS))).profile == "linux"
    assert detect(parse("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n")) == "linux"
    code, out, _ = replay(SACK, profile="linux")  # Linux lays out its SYN-ACK's options otherwise
    assert code == 1 and "tcp.options" in out, out
    code, out, _ = replay(TS, profile="freebsd")
    assert code == 1, out


def test_sysctls_move_the_profile() -> None:
    base = PROFILES["freebsd"]
    s = parse_command("sysctl -w net.inet.tcp.insecure_rst=1 net.inet.tcp.recvspace=8192")[0]
    changed = apply_sysctls(base, s)
    assert (changed["rfc5961_rst"], changed["rcvbuf"], changed["rfc5961_syn"]) == (False, 8192, True)
    assert apply_sysctls(base, parse_command("sysctl -w kern.ipc.maxsockbuf=4294967295")[0])["wscale"] == 14
    assert apply_sysctls(base, parse_command("sysctl -w net.inet.tcp.rfc1323=0")[0])["wscale"] == -1
    assert apply_sysctls(base, parse_command("sysctl -w net.inet.tcp.rexmit_slop=100")[0])["rto_slop"] == 0.1
    assert apply_sysctls(base, parse_command("sysctl -w net.inet.tcp.blackhole=0")[0]) == base  # no-ops
    linux = apply_sysctls(PROFILES["linux"], parse_command(
        '../common/defaults.sh\n../common/set_sysctls.py /proc/sys/net/ipv4/tcp_wmem="4096 50000 4194304" \\\n'
        "  /proc/sys/net/ipv4/tcp_timestamps=0")[0])
    assert (linux["sndbuf"], linux["timestamps"]) == (50000, False)
    assert parse_command("../common/defaults.sh\ntc qdisc replace dev tun0 root fq")[1] == "tc qdisc replace dev tun0 root fq"
    with pytest.raises(SysctlError, match="blackhole=1"):
        apply_sysctls(base, parse_command("sysctl -w net.inet.tcp.blackhole=1")[0])


def test_import_writes_a_scenario_that_replays_as_the_script(tmp_path: Path) -> None:
    for script in OWN:
        out = tmp_path / f"{script.stem}.yaml"
        r = subprocess.run([sys.executable, "-m", "simstack", "import", str(script), "-o", str(out)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        scenario = load(out)
        assert Runner(scenario).run().passed, script
        # each step notes the script's line it stands for
        assert f"note: 'line {line_of(script, 'close(3) = 0')}: " in out.read_text()
    skipped = tmp_path / "tfo.pkt"
    skipped.write_text("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 setsockopt(3, IPPROTO_TCP, TCP_FASTOPEN, [1], 4) = 0\n")
    r = subprocess.run([sys.executable, "-m", "simstack", "import", str(skipped), "-o", str(tmp_path / "tfo.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unsupported setsockopt TCP_FASTOPEN" in r.stderr
    assert not (tmp_path / "tfo.yaml").exists()


def test_a_loaded_script_keeps_its_lines() -> None:
    scenario = load_pkt(SACK)
    assert scenario.path == str(SACK)
    lines = [s.line for s in scenario.steps if s.line]
    assert lines == sorted(lines) and line_of(SACK, "listen(3, 1)") in lines


def test_tso_segments_are_cut_to_the_mss(tmp_path: Path) -> None:
    """Google's harness runs the tun with TSO: one 3000-byte segment is three of the MSS on a wire."""
    script = tmp_path / "tso.pkt"
    script.write_text("`../common/defaults.sh`\n0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n"
                      "+0 bind(3, ..., ...) = 0\n+0 listen(3, 1) = 0\n"
                      "+0 < S 0:0(0) win 32792 <mss 1000,nop,nop,sackOK,nop,wscale 7>\n"
                      "+0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 8>\n"
                      "+.01 < . 1:1(0) ack 1 win 257\n+0 accept(3, ..., ...) = 4\n"
                      "+0 write(4, ..., 3000) = 3000\n+0 > P. 1:3001(3000) ack 1\n")
    t = translate(parse(script.read_text(), str(script)))
    pieces = re.findall(r"flags: (\S+), seq: (\d+), ack: \{abs: 1\}, options: \[\], len: (\d+)", t.text)
    assert pieces == [(".", "1", "1000"), (".", "1001", "1000"), ("P.", "2001", "1000")]
    code, out, _ = replay(script)
    assert code == 0, out


def test_skip_is_an_exception_with_the_line() -> None:
    with pytest.raises(Skip) as info:
        translate(parse("0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n\n+0 ioctl(3, FIONREAD, [0]) = 0\n", "x.pkt"))
    assert (info.value.line, info.value.what) == (3, "system call ioctl()")


@pytest.mark.parametrize(("step", "message"), [
    ("  - inject: {arp: {op: request}}\n    quote: {tcp: {seq: 1}}\n", "quote goes with an ICMP error to inject"),
    ("  - inject: {icmp: {type: dest-unreachable}}\n    quote: {ipv4: {ttl: 1}}\n", "quote: the stack's TCP segment"),
    ("  - app: sockstat\n    state: TIME_WAIT\n    count: 1\n", "state must be one of CLOSED, LISTEN"),
    ("  - app: sockstat\n    state: TIME-WAIT\n", "app: sockstat needs count"),
    ("  - app: socket\n    socket: s\n    type: stream\n  - app: getblocking\n    socket: s\n",
     "app: getblocking needs blocking"),
])
def test_the_language_the_translation_needs_is_checked(step: str, message: str) -> None:
    from simstack.engine.scenario.loader import ScenarioError, loads

    with pytest.raises(ScenarioError, match=re.escape(message)):
        loads(f"description: x\nsteps:\n{step}")
