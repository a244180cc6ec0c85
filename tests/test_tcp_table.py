"""The TCP state table: the static Machine and the dispatch dict agree row by row, and refuse the same pairs."""

import re

import pytest
from transitions import MachineError

from simstack.protocols import tcp_table as t
from simstack.protocols.tcp_conn import TcpConn


class Model:
    """A bare model: the machine is static (model=None), so any object with ``state`` will do."""

    def __init__(self, state: str) -> None:
        self.state = state


@pytest.mark.parametrize("row", t.ROWS, ids=[f"{r.state}:{r.event}" for r in t.ROWS])
def test_every_row_lands_where_dispatch_says(row: t.Row) -> None:
    model = Model(row.state)
    t.MACHINE.events[row.event].trigger(model)
    assert model.state == row.next_state
    assert t.DISPATCH[(row.state, row.event)] == (row.next_state, row.action)


def test_pairs_not_in_the_table_are_refused_by_both() -> None:
    refused = [(s, e) for s in t.STATES for e in t.EVENTS if (s, e) not in t.DISPATCH]
    assert len(refused) > len(t.STATES) * 5  # the table is not "anything goes"
    for state, event in refused:
        model = Model(state)
        with pytest.raises(MachineError):
            t.MACHINE.events[event].trigger(model)
        assert model.state == state
        assert t.DISPATCH.get((state, event)) is None


def test_all_eleven_states_and_every_row_cites_the_rfc() -> None:
    assert len(t.STATES) == 11 and t.INITIAL == "CLOSED"
    assert set(t.MACHINE.states) == set(t.STATES)
    for row in t.ROWS:
        assert re.search(r"RFC \d+ \d+(\.\d+)*", row.rfc), row
        assert row.state in t.STATES and row.next_state in t.STATES


def test_every_state_is_reachable_and_left() -> None:
    reached = {t.INITIAL} | {r.next_state for r in t.ROWS if r.state != r.next_state}
    left = {r.state for r in t.ROWS if r.state != r.next_state}
    assert reached == set(t.STATES)
    assert left == set(t.STATES)


def test_transitions_dict_form_matches_rows() -> None:
    assert [(d["trigger"], d["source"], d["dest"]) for d in t.TRANSITIONS] == [(r.event, r.state, r.next_state) for r in t.ROWS]


def test_the_rfc_diagram_edges_are_there() -> None:
    """The arrows of RFC 9293 Figure 5, each present as some row."""
    edges = {(r.state, r.next_state) for r in t.ROWS}
    figure5 = [
        ("CLOSED", "LISTEN"), ("CLOSED", "SYN-SENT"), ("LISTEN", "SYN-RECEIVED"), ("SYN-SENT", "SYN-RECEIVED"),
        ("SYN-SENT", "ESTABLISHED"), ("SYN-RECEIVED", "ESTABLISHED"), ("SYN-RECEIVED", "FIN-WAIT-1"),
        ("ESTABLISHED", "FIN-WAIT-1"), ("ESTABLISHED", "CLOSE-WAIT"), ("FIN-WAIT-1", "FIN-WAIT-2"),
        ("FIN-WAIT-1", "CLOSING"), ("FIN-WAIT-2", "TIME-WAIT"), ("CLOSING", "TIME-WAIT"), ("CLOSE-WAIT", "LAST-ACK"),
        ("LAST-ACK", "CLOSED"), ("TIME-WAIT", "CLOSED"), ("LISTEN", "CLOSED"), ("SYN-SENT", "CLOSED"),
    ]
    assert [e for e in figure5 if e not in edges] == []


def test_every_action_is_implemented() -> None:
    missing = [a for a in t.ACTIONS if not callable(getattr(TcpConn, "_a_" + a, None))]
    assert missing == []


def test_one_machine_no_models() -> None:
    for _ in range(100):
        t.MACHINE.events["OPEN_ACTIVE"].trigger(Model("CLOSED"))
    assert t.MACHINE.models == []
