"""The service's garbage-collector policy (api/live/heap.py) on this process's real collector."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

from api.live.heap import HeapPolicy


class _Node:
    """A cycle member that only the cyclic collector frees."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> _Node:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a


@pytest.fixture
def policy():
    p = HeapPolicy(sweep_every_s=3600.0)
    try:
        yield p
    finally:
        p.close()
        gc.unfreeze()


def test_survivors_of_a_full_collection_are_frozen_and_a_sweep_frees_their_cycles(policy):
    assert not policy.sweep_due()  # nothing frozen yet: no sweep either
    policy.settle()
    frozen = gc.get_freeze_count()
    assert frozen > 0 and gc.get_count()[2] == 0
    node = _cycle()
    ref = weakref.ref(node)
    gc.collect()  # the cycle is alive: it survives and is frozen with the rest
    assert gc.get_freeze_count() >= frozen + 2
    del node  # now garbage, but frozen: full collections leave it alone
    gc.collect()
    assert ref() is not None
    pause_s = policy.sweep()  # unfreeze, collect, freeze
    assert ref() is None
    assert pause_s >= 0 and policy.last_sweep_pause_s == pause_s


def test_a_sweep_is_due_after_its_period_and_close_stops_freezing(policy):
    policy.settle()
    assert not policy.sweep_due()
    policy.sweep_every_s = 0.001
    time.sleep(0.01)
    assert policy.sweep_due()
    policy.sweep()
    policy.close()
    frozen = gc.get_freeze_count()
    node = _cycle()
    gc.collect()
    assert gc.get_freeze_count() == frozen  # no callback any more: nothing frozen
    assert node.other.other is node
    with pytest.raises(ValueError, match="sweep_every_s"):
        HeapPolicy(sweep_every_s=0)


def test_collection_is_deferred_inside_the_block_and_back_after_the_last_one(policy):
    assert gc.isenabled()
    with policy.deferred():
        assert not gc.isenabled()
        with policy.deferred():  # nested (or another thread's): still off
            assert not gc.isenabled()
        assert not gc.isenabled()
        node = _cycle()
        ref = weakref.ref(node)
        del node
        kept = [[] for _ in range(10 * gc.get_threshold()[0])]  # would trigger collections
        assert ref() is not None  # nothing collected the cycle meanwhile
    assert gc.isenabled()
    node = _cycle()
    ref_after = weakref.ref(node)
    del node
    kept += [[] for _ in range(10 * gc.get_threshold()[0])]
    assert ref_after() is None  # the same allocations now collect a cycle
    gc.collect()
    assert ref() is None


def test_deferred_leaves_a_collector_that_was_off_off(policy):
    gc.disable()
    try:
        with policy.deferred():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
