"""Handoff: the channel from a connection's greenlet to the greenlet iterating its events."""

from __future__ import annotations

import random

import gevent
import gevent.event
import pytest

from sseplug._handoff import Handoff

END = object()


def read_all(handoff: Handoff, got: list[object]) -> None:
    while (item := handoff.get()) is not END:
        got.append(item)


def test_items_arrive_in_order_whether_handed_over_or_buffered() -> None:
    handoff, got = Handoff(2), []
    reader = gevent.spawn(read_all, handoff, got)

    def write() -> None:
        for i in range(50):
            handoff.put(i)
            if i % 7 == 0:
                gevent.sleep(0)  # sometimes the reader waits on the hub, sometimes on the writer
        handoff.put(END, last=True)

    writer = gevent.spawn(write)
    gevent.joinall([reader, writer], timeout=5, raise_error=True)
    assert got == list(range(50)) and reader.dead and writer.dead


def test_a_waiting_reader_runs_before_the_writer_goes_on() -> None:
    handoff, trace = Handoff(2), []

    def read() -> None:
        for _ in range(3):
            trace.append(("got", handoff.get()))

    def write() -> None:
        for i in range(3):
            handoff.put(i)
            trace.append(("put returned", i))

    reader = gevent.spawn(read)
    gevent.sleep(0)  # the reader waits
    writer = gevent.spawn(write)
    gevent.joinall([reader, writer], timeout=5, raise_error=True)
    assert trace[:2] == [("got", 0), ("put returned", 0)]
    assert [t for t in trace if t[0] == "got"] == [("got", 0), ("got", 1), ("got", 2)]


def test_without_a_reader_the_writer_buffers_maxsize_items_then_waits_for_room() -> None:
    handoff, written = Handoff(2), []

    def write() -> None:
        for i in range(5):
            handoff.put(i)
            written.append(i)

    writer = gevent.spawn(write)
    gevent.sleep(0.05)
    assert written == [0, 1] and not writer.dead  # backpressure: full at 2
    assert handoff.get() == 0
    gevent.sleep(0.05)
    assert written == [0, 1, 2]
    assert [handoff.get() for _ in range(4)] == [1, 2, 3, 4]
    writer.join(5)
    assert writer.dead


def test_a_writer_that_waited_for_room_wakes_the_reader_that_emptied_the_buffer_meanwhile() -> None:
    handoff, written = Handoff(2), []

    def write() -> None:
        for i in range(3):
            handoff.put(i)
            written.append(i)

    writer = gevent.spawn(write)
    gevent.sleep(0.05)
    assert written == [0, 1]  # the third put waits for room, no reader yet
    with gevent.Timeout(2, AssertionError("the reader was never woken for the third item")):
        assert [handoff.get() for _ in range(3)] == [0, 1, 2]  # the third: waited for in get()
    writer.join(2)
    assert writer.dead and written == [0, 1, 2]


def test_a_writer_paused_after_a_handover_goes_on_when_the_reader_stops_asking() -> None:
    handoff, written = Handoff(2), []
    first: list[object] = []
    reader = gevent.spawn(lambda: first.append(handoff.get()))  # takes one item, then ends
    gevent.sleep(0)

    def write() -> None:
        for i in range(3):
            handoff.put(i)
            written.append(i)

    writer = gevent.spawn(write)
    gevent.joinall([reader, writer], timeout=5)
    assert first == [0] and written == [0, 1, 2] and writer.dead  # 1 and 2 wait in the buffer
    assert [handoff.get(), handoff.get()] == [1, 2]


def test_a_timeout_in_the_waiting_reader_leaves_the_channel_usable() -> None:
    handoff = Handoff(2)
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
        handoff.get()
    gevent.spawn(handoff.put, "after")
    with gevent.Timeout(5):
        assert handoff.get() == "after"


def test_a_timeout_while_the_reader_waits_on_the_writer_leaves_the_channel_usable() -> None:
    handoff = Handoff(2)
    go_on = gevent.event.Event()

    def write() -> None:
        handoff.put("first")  # handed over: paused until the reader asks again
        go_on.wait()  # then the writer itself waits on the hub for a while
        handoff.put("second")

    reader_items = []
    writer = gevent.spawn(write)
    with gevent.Timeout(5):
        reader_items.append(handoff.get())
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.05):
        handoff.get()  # goes straight back to the writer, which now waits on go_on
    go_on.set()
    with gevent.Timeout(5):
        reader_items.append(handoff.get())
    writer.join(5)
    assert reader_items == ["first", "second"] and writer.dead


def test_a_last_item_from_another_greenlet_wakes_a_reader_waiting_on_the_writer() -> None:
    handoff = Handoff(2)
    block = gevent.event.Event()

    def write() -> None:
        handoff.put("one")
        block.wait()  # never set: the writer is stuck on the hub

    writer = gevent.spawn(write)
    assert handoff.get() == "one"  # handed over: the writer is paused until the next get()
    closer = gevent.spawn_later(0.05, handoff.put, END, True)
    with gevent.Timeout(5):
        assert handoff.get() is END  # was waiting on the writer: woken through the hub
    closer.join(5)
    writer.kill(block=True, timeout=5)
    assert writer.dead


def test_killing_a_paused_writer_ends_it() -> None:
    handoff = Handoff(2)
    done: list[str] = []

    def write() -> None:
        try:
            handoff.put("one")
            gevent.sleep(10)
        finally:
            done.append("finally")

    def read() -> None:
        handoff.get()
        writer.kill(block=False)  # the writer is paused inside put() at this point
        gevent.sleep(0.05)

    writer = gevent.spawn(write)
    reader = gevent.spawn(read)
    gevent.joinall([reader, writer], timeout=5)
    assert writer.dead and done == ["finally"]


def test_close_lets_a_writer_waiting_for_room_go_on() -> None:
    handoff = Handoff(1)
    writer = gevent.spawn(lambda: [handoff.put(i) for i in range(3)])
    gevent.sleep(0.05)
    assert not writer.dead  # full at 1: waiting for room
    handoff.close()
    writer.join(5)
    assert writer.dead and writer.successful()
    assert [handoff.get() for _ in range(3)] == [0, 1, 2]  # nothing dropped


def _pause(rng: random.Random) -> None:
    """Nothing, a hub turn, an idle turn or a short sleep: the orders greenlets meet in."""
    choice = rng.random()
    if choice < 0.3:
        return
    if choice < 0.6:
        gevent.sleep(0)
    elif choice < 0.8:
        gevent.idle()
    else:
        gevent.sleep(rng.random() * 0.002)


@pytest.mark.parametrize("seed", range(200))
def test_random_interleavings_deliver_every_item_once_in_order(seed: int) -> None:
    """Writer and reader pause at random (and the reader's waits time out at random): every item
    arrives, in order, and both end; a lost wake-up shows as a deadlock here."""
    rng = random.Random(seed)
    handoff, count, got = Handoff(rng.randint(1, 3)), rng.randint(1, 30), []

    def write() -> None:
        for i in range(count):
            handoff.put(i)
            _pause(rng)
        handoff.put(END, last=True)

    def read() -> None:
        while True:
            try:
                with gevent.Timeout(rng.random() * 0.002 if rng.random() < 0.2 else None):
                    item = handoff.get()
            except gevent.Timeout:
                continue
            if item is END:
                return
            got.append(item)
            _pause(rng)

    writer, reader = gevent.spawn(write), gevent.spawn(read)
    gevent.joinall([writer, reader], timeout=3)
    stuck = [name for name, greenlet in (("writer", writer), ("reader", reader)) if not greenlet.dead]
    gevent.killall([writer, reader])
    assert not stuck and got == list(range(count)), f"{stuck} stuck after {got} of {count}"
