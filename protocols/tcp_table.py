"""The TCP connection state machine (RFC 9293 3.3.2), declared once as rows of data.

Each row is (state, event, next state, action, where the RFC says so). Three
things are built from the same rows at import:

- ``TRANSITIONS`` and ``MACHINE``: one static ``transitions`` Machine
  (``model=None``), for validation, the tests that walk every row, and the
  ``simstack graph tcp`` drawing. It is never triggered per segment and never
  copied per connection (a Machine costs about 95 KiB and a trigger 6-11 us).
- ``DISPATCH``: ``(state, event) -> (next state, action)``, the dict the
  connection code (``tcp_conn``) looks up on every slow-path event. A pair
  that is not in the table is not allowed: the connection counts it and
  leaves its state alone.

The fast path (an in-order segment or a pure ACK in ESTABLISHED) is the
ESTABLISHED rows for ACK and TEXT inlined: it changes no state and consults
neither the machine nor the dict.

Events are the RFC's own: user calls (3.10.1-3.10.5), segment arrivals by
kind (3.10.7, with RFC 5961's in-window RST and SYN), and timeouts (3.10.8).
Actions name ``TcpConn._a_<action>`` methods.
"""

from typing import NamedTuple

from transitions import Machine

CLOSED = "CLOSED"
LISTEN = "LISTEN"
SYN_SENT = "SYN-SENT"
SYN_RECEIVED = "SYN-RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN-WAIT-1"
FIN_WAIT_2 = "FIN-WAIT-2"
CLOSE_WAIT = "CLOSE-WAIT"
CLOSING = "CLOSING"
LAST_ACK = "LAST-ACK"
TIME_WAIT = "TIME-WAIT"
STATES = [CLOSED, LISTEN, SYN_SENT, SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK,
          TIME_WAIT]
INITIAL = CLOSED

# States in which both sequence spaces are known (RFC 9293 3.10.7.4 "synchronized").
SYNCHRONIZED = (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT)

# -- events ---------------------------------------------------------------------
# User calls (RFC 9293 3.10.1-3.10.5).
OPEN_PASSIVE = "OPEN_PASSIVE"
OPEN_ACTIVE = "OPEN_ACTIVE"
SEND = "SEND"
RECEIVE = "RECEIVE"
CLOSE = "CLOSE"
ABORT = "ABORT"
# Segment arrivals (RFC 9293 3.10.7), by what the segment turns out to be.
SEGMENT = "SEGMENT"  # anything, to a connection that does not exist (3.10.7.1)
SYN = "SYN"  # SYN without ACK; in a synchronized state, any SYN in the window
SYN_ACK = "SYN_ACK"  # SYN with an ACK of our SYN (SYN-SENT)
DUP_SYN = "DUP_SYN"  # the peer's SYN again, so our SYN-ACK was lost
SYN_RFC793 = "SYN_RFC793"  # a SYN in the window when RFC 5961 checks are off
SYN_REOPEN = "SYN_REOPEN"  # a SYN above the old RCV.NXT reaching TIME-WAIT
RST = "RST"  # an acceptable RST (RFC 5961: exactly at RCV.NXT)
RST_IN_WINDOW = "RST_IN_WINDOW"  # in the window but not at RCV.NXT (RFC 5961 3.2)
UNACCEPTABLE = "UNACCEPTABLE"  # fails the acceptability test (3.10.7.4 first)
BAD_ACK = "BAD_ACK"  # acknowledges something not sent, or too old (RFC 5961 5.2)
ACK_OF_SYN = "ACK_OF_SYN"
ACK = "ACK"  # acknowledgment processing that moves no state
ACK_OF_FIN = "ACK_OF_FIN"
TEXT = "TEXT"  # segment data
TEXT_AFTER_CLOSE = "TEXT_AFTER_CLOSE"  # data for an application that has closed
FIN = "FIN"
ICMP_UNREACHABLE = "ICMP_UNREACHABLE"  # a hard ICMP error about our SYN
# Timeouts (RFC 9293 3.10.8).
RETRANSMISSION_TIMEOUT = "RETRANSMISSION_TIMEOUT"
USER_TIMEOUT = "USER_TIMEOUT"  # the retry limit, or keepalive probes unanswered
TIME_WAIT_TIMEOUT = "TIME_WAIT_TIMEOUT"
FIN_WAIT_2_TIMEOUT = "FIN_WAIT_2_TIMEOUT"


class Row(NamedTuple):
    state: str
    event: str
    next_state: str
    action: str
    rfc: str


def _rows(states: tuple[str, ...] | list[str], event: str, next_state: str | None, action: str, rfc: str) -> list[Row]:
    """One row per state; ``next_state`` None means each state stays where it is."""
    return [Row(s, event, s if next_state is None else next_state, action, rfc) for s in states]


_SEG = "RFC 9293 3.10.7.4"
_USER_TIMEOUT_STATES = (SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK)

ROWS: list[Row] = [
    # -- OPEN (3.10.1) ----------------------------------------------------------
    Row(CLOSED, OPEN_PASSIVE, LISTEN, "listen", "RFC 9293 3.10.1"),
    Row(CLOSED, OPEN_ACTIVE, SYN_SENT, "send_syn", "RFC 9293 3.10.1"),
    # -- SEND (3.10.2): queued before ESTABLISHED, refused once we sent our FIN --
    *_rows((SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT), SEND, None, "queue_data", "RFC 9293 3.10.2"),
    # -- RECEIVE (3.10.3): before ESTABLISHED it waits; after a FIN it drains then says EOF --
    *_rows((SYN_SENT, SYN_RECEIVED, *SYNCHRONIZED), RECEIVE, None, "read", "RFC 9293 3.10.3"),
    # -- CLOSE (3.10.4) -----------------------------------------------------------
    Row(LISTEN, CLOSE, CLOSED, "close_listener", "RFC 9293 3.10.4"),
    Row(SYN_SENT, CLOSE, CLOSED, "delete_tcb", "RFC 9293 3.10.4"),
    Row(SYN_RECEIVED, CLOSE, FIN_WAIT_1, "send_fin", "RFC 9293 3.10.4"),
    Row(ESTABLISHED, CLOSE, FIN_WAIT_1, "send_fin", "RFC 9293 3.10.4"),
    Row(CLOSE_WAIT, CLOSE, LAST_ACK, "send_fin", "RFC 9293 3.10.4"),
    # -- ABORT (3.10.5) -----------------------------------------------------------
    Row(LISTEN, ABORT, CLOSED, "close_listener", "RFC 9293 3.10.5"),
    Row(SYN_SENT, ABORT, CLOSED, "delete_tcb", "RFC 9293 3.10.5"),
    *_rows((SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT), ABORT, CLOSED, "send_rst", "RFC 9293 3.10.5"),
    *_rows((CLOSING, LAST_ACK, TIME_WAIT), ABORT, CLOSED, "delete_tcb", "RFC 9293 3.10.5"),
    # -- SEGMENT ARRIVES: no connection (3.10.7.1) --------------------------------
    Row(CLOSED, SEGMENT, CLOSED, "reply_rst", "RFC 9293 3.10.7.1"),
    # -- LISTEN (3.10.7.2); a SYN forks a child that leaves LISTEN, the listener stays --
    Row(LISTEN, RST, LISTEN, "ignore", "RFC 9293 3.10.7.2"),
    Row(LISTEN, BAD_ACK, LISTEN, "reply_rst", "RFC 9293 3.10.7.2"),
    Row(LISTEN, SYN, SYN_RECEIVED, "send_syn_ack", "RFC 9293 3.10.7.2"),
    # -- SYN-SENT (3.10.7.3) ------------------------------------------------------
    Row(SYN_SENT, BAD_ACK, SYN_SENT, "reply_rst", "RFC 9293 3.10.7.3"),
    Row(SYN_SENT, RST, CLOSED, "refused", "RFC 9293 3.10.7.3; RFC 5961 3.2"),
    Row(SYN_SENT, SYN_ACK, ESTABLISHED, "connected", "RFC 9293 3.10.7.3"),
    Row(SYN_SENT, SYN, SYN_RECEIVED, "send_syn_ack", "RFC 9293 3.10.7.3 (simultaneous open)"),
    Row(SYN_SENT, ICMP_UNREACHABLE, CLOSED, "refused", "RFC 1122 4.2.3.9; RFC 5461 2"),
    # -- SYN-RECEIVED and the synchronized states (3.10.7.4) ----------------------
    Row(SYN_RECEIVED, DUP_SYN, SYN_RECEIVED, "resend_syn_ack", _SEG + " first (answer with our SYN-ACK)"),
    *_rows((SYN_RECEIVED, *SYNCHRONIZED), UNACCEPTABLE, None, "send_ack", _SEG + " first"),
    # second: RST
    Row(SYN_RECEIVED, RST, CLOSED, "reset", _SEG + " second"),
    *_rows((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT), RST, CLOSED, "reset", _SEG + " second"),
    # CLOSING and LAST-ACK: the RFC deletes the TCB and says nothing to the user; an application that
    # still holds the socket (after shutdown) learns ECONNRESET, as on Linux (tcp_reset) and FreeBSD
    *_rows((CLOSING, LAST_ACK), RST, CLOSED, "reset", _SEG + " second"),
    Row(TIME_WAIT, RST, CLOSED, "delete_tcb", _SEG + " second"),
    *_rows((SYN_RECEIVED, *SYNCHRONIZED), RST_IN_WINDOW, None, "challenge_ack", "RFC 5961 3.2; " + _SEG + " second"),
    # fourth: SYN
    *_rows((SYN_RECEIVED, *SYNCHRONIZED), SYN, None, "challenge_ack", "RFC 5961 4.2; " + _SEG + " fourth"),
    *_rows((SYN_RECEIVED, *SYNCHRONIZED), SYN_RFC793, CLOSED, "reset_by_syn", "RFC 793 3.9 (SYN in the window)"),
    Row(TIME_WAIT, SYN_REOPEN, CLOSED, "reopen", "RFC 1122 4.2.2.13; RFC 9293 3.10.7.4 fourth"),
    # fifth: ACK
    Row(SYN_RECEIVED, BAD_ACK, SYN_RECEIVED, "reply_rst", _SEG + " fifth"),
    Row(SYN_RECEIVED, ACK_OF_SYN, ESTABLISHED, "established", _SEG + " fifth"),
    *_rows(SYNCHRONIZED, BAD_ACK, None, "send_ack", _SEG + " fifth; RFC 5961 5.2"),
    *_rows((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK), ACK, None, "process_ack", _SEG + " fifth"),
    Row(TIME_WAIT, ACK, TIME_WAIT, "ignore", _SEG + " fifth"),
    Row(FIN_WAIT_1, ACK_OF_FIN, FIN_WAIT_2, "fin_acked", _SEG + " fifth"),
    Row(CLOSING, ACK_OF_FIN, TIME_WAIT, "enter_time_wait", _SEG + " fifth"),
    Row(LAST_ACK, ACK_OF_FIN, CLOSED, "delete_tcb", _SEG + " fifth"),
    # seventh: segment text
    *_rows((ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2), TEXT, None, "deliver", _SEG + " seventh"),
    *_rows((CLOSE_WAIT, CLOSING, LAST_ACK, TIME_WAIT), TEXT, None, "ignore", _SEG + " seventh"),
    *_rows((FIN_WAIT_1, FIN_WAIT_2), TEXT_AFTER_CLOSE, CLOSED, "send_rst", "RFC 9293 3.10.4; RFC 1122 4.2.2.13"),
    # eighth: FIN
    Row(ESTABLISHED, FIN, CLOSE_WAIT, "fin_received", _SEG + " eighth"),
    Row(FIN_WAIT_1, FIN, CLOSING, "fin_received", _SEG + " eighth"),
    Row(FIN_WAIT_2, FIN, TIME_WAIT, "fin_time_wait", _SEG + " eighth"),
    *_rows((CLOSE_WAIT, CLOSING, LAST_ACK), FIN, None, "ignore", _SEG + " eighth"),
    Row(TIME_WAIT, FIN, TIME_WAIT, "restart_time_wait", _SEG + " eighth"),
    # -- timeouts (3.10.8) ------------------------------------------------------------
    *_rows((SYN_SENT, SYN_RECEIVED, ESTABLISHED, FIN_WAIT_1, CLOSE_WAIT, CLOSING, LAST_ACK), RETRANSMISSION_TIMEOUT, None,
           "retransmit", "RFC 9293 3.10.8; RFC 6298 5"),
    Row(SYN_SENT, USER_TIMEOUT, CLOSED, "timed_out", "RFC 9293 3.10.8; RFC 1122 4.2.3.5"),
    *_rows(_USER_TIMEOUT_STATES, USER_TIMEOUT, CLOSED, "timed_out_rst", "RFC 9293 3.10.8; RFC 1122 4.2.3.5"),
    Row(TIME_WAIT, TIME_WAIT_TIMEOUT, CLOSED, "delete_tcb", "RFC 9293 3.10.8"),
    Row(FIN_WAIT_2, FIN_WAIT_2_TIMEOUT, CLOSED, "delete_tcb", "RFC 9293 3.10.8 (Linux tcp_fin_timeout, for an orphan)"),
]

EVENTS = sorted({r.event for r in ROWS})

# transitions' dict form, one entry per row.
TRANSITIONS: list[dict[str, str]] = [{"trigger": r.event, "source": r.state, "dest": r.next_state} for r in ROWS]

MACHINE = Machine(model=None, states=STATES, transitions=TRANSITIONS, initial=INITIAL, auto_transitions=False)


def _compile(rows: list[Row]) -> dict[tuple[str, str], tuple[str, str]]:
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for r in rows:
        if (r.state, r.event) in out:
            raise ValueError(f"two rows for {r.state} / {r.event}")
        out[(r.state, r.event)] = (r.next_state, r.action)
    return out


DISPATCH = _compile(ROWS)
ACTIONS = sorted({r.action for r in ROWS})
