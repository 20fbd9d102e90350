"""Ids sort in the order they were made, even many in one millisecond (lists and cursors rely on it)."""

from __future__ import annotations

import threading

from replyflow.ids import new_id


def test_ids_made_one_after_another_sort_in_that_order() -> None:
    ids = [new_id("msg") for _ in range(5000)]  # thousands per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_from_many_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id("run") for _ in range(2000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every)
    assert all(out == sorted(out) for out in made)
