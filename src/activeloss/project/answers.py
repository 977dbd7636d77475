"""Annotators' answers as append-only events, and the labels they add up to.

An answer is an event: an annotator *labels* an item with a class, *skips* it, or *undoes*
their latest answer still in force (an undo is an event too: nothing is ever deleted or
overwritten).  What counts is derived from the events, the same way every time:

* each annotator's answer for an item is their latest one not undone;
* an item's label is the majority of its annotators' labels, a tie going to the latest answer;
* an item without a label that some annotator skipped is *skipped*: it is not queried again
  unless asked.

These functions are pure (events in, labels out) so the server, the command line and the
training process derive the same labels from the same store.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

Kind = Literal["label", "skip", "undo"]


@dataclass(frozen=True)
class Answer:
    """One event as stored (``id`` orders them)."""

    id: int
    item: int
    annotator: str
    kind: Kind
    label: int | None = None  # the class index of a label
    undoes: int | None = None  # the answer an undo takes back
    at: float = 0.0


@dataclass(frozen=True)
class Derived:
    """What the events add up to."""

    #: item -> its label
    labels: dict[int, int]
    #: item -> the answer that decided its label (the latest of the winning class)
    deciding: dict[int, Answer]
    #: items without a label that an annotator skipped
    skipped: set[int]
    #: (annotator, item) -> that annotator's answer in force
    current: dict[tuple[str, int], Answer]


def in_force(answers: list[Answer]) -> list[Answer]:
    """The label and skip events not undone, in event order."""
    undone = {a.undoes for a in answers if a.kind == "undo"}
    return [a for a in answers if a.kind != "undo" and a.id not in undone]


def latest_in_force(answers: list[Answer], annotator: str) -> Answer | None:
    """The annotator's most recent answer still in force: what their next undo takes back."""
    mine = [a for a in in_force(answers) if a.annotator == annotator]
    return mine[-1] if mine else None


def derive(answers: list[Answer]) -> Derived:
    """Labels, skips and each annotator's answer in force from the events (see the module docstring)."""
    current: dict[tuple[str, int], Answer] = {}
    for a in sorted(in_force(answers), key=lambda a: a.id):
        current[(a.annotator, a.item)] = a  # a later answer replaces the annotator's earlier one
    votes: dict[int, list[Answer]] = {}
    skips: set[int] = set()
    for a in current.values():
        if a.kind == "label":
            votes.setdefault(a.item, []).append(a)
        else:
            skips.add(a.item)
    labels: dict[int, int] = {}
    deciding: dict[int, Answer] = {}
    for item, its in votes.items():
        counts = Counter(a.label for a in its)
        top = max(counts.values())
        tied = [a for a in its if counts[a.label] == top]
        winner = max(tied, key=lambda a: a.id)  # a tie goes to the latest answer
        assert winner.label is not None
        labels[item], deciding[item] = winner.label, winner
    return Derived(labels, deciding, skips - set(labels), current)


@dataclass(frozen=True)
class Agreement:
    """How often two annotators gave the same label to the items both labeled."""

    first: str
    second: str
    items: int
    agreed: int

    @property
    def rate(self) -> float:
        return self.agreed / self.items if self.items else float("nan")


def agreement(derived: Derived) -> list[Agreement]:
    """Pairwise agreement of the annotators on the items both labeled (in force)."""
    by_annotator: dict[str, dict[int, int]] = {}
    for (who, item), a in derived.current.items():
        if a.kind == "label" and a.label is not None:
            by_annotator.setdefault(who, {})[item] = a.label
    out = []
    for x, y in combinations(sorted(by_annotator), 2):
        both = by_annotator[x].keys() & by_annotator[y].keys()
        same = sum(by_annotator[x][i] == by_annotator[y][i] for i in both)
        if both:
            out.append(Agreement(x, y, len(both), same))
    return out
