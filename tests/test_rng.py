"""The one rule for randomness: ``rng`` in, streams keyed by value, one seed record out; and what it
buys: adding a grid point, a seed or a figure changes no existing result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncsim import Sweep, run_sweep
from asyncsim._rng import SeedRecord, record, root, stream

LABELS = st.lists(st.one_of(st.integers(0, 2**31 - 1), st.text(max_size=8)), max_size=4)


# ------------------------------------------------------------------------------------------ rules
def test_root_of_each_kind_of_rng() -> None:
    assert root(5).entropy == 5 and root(5).spawn_key == ()
    seq = np.random.SeedSequence(9, spawn_key=(1, 2))
    assert root(seq) is seq
    fresh = root(None)
    assert isinstance(fresh.entropy, int) and fresh.entropy.bit_length() > 64


def test_a_generator_is_a_source_of_new_roots() -> None:
    generator = np.random.default_rng(0)
    first, second = root(generator), root(generator)
    assert first.entropy != second.entropy
    again = np.random.default_rng(0)
    assert root(again).entropy == first.entropy  # the same generator state gives the same root


@pytest.mark.parametrize(
    ("rng", "error", "message"),
    [
        ("x", TypeError, r"rng must be None, an int in \[0, inf\).*got 'x' \(str\)"),
        (-3, ValueError, r"rng must be .*got -3"),
        (2.5, TypeError, r"got 2\.5 \(float\)"),
        (True, TypeError, r"got True \(bool\)"),
    ],
)
def test_bad_rng_is_named(rng, error, message) -> None:
    with pytest.raises(error, match=message):
        root(rng)


@pytest.mark.parametrize("label", [-1, 2**31, 1.5, True, None])
def test_bad_labels_are_rejected(label) -> None:
    with pytest.raises(ValueError, match="stream label must be a str or an int in"):
        stream(np.random.SeedSequence(0), label)


@given(entropy=st.integers(0, 2**128), labels=LABELS)
def test_streams_depend_only_on_the_root_and_the_labels(entropy: int, labels: list) -> None:
    """Built twice, independently, from the same values: the same stream (never a counter)."""
    parent = np.random.SeedSequence(entropy)
    parent.spawn(3)  # spawning children of the parent moves no labelled stream
    a = stream(parent, *labels)
    b = stream(np.random.SeedSequence(entropy), *labels)
    assert a.spawn_key == b.spawn_key
    np.testing.assert_array_equal(a.generate_state(4), b.generate_state(4))


@given(labels=LABELS, other=LABELS)
def test_different_labels_give_different_streams(labels: list, other: list) -> None:
    parent = np.random.SeedSequence(1)
    if [str(x) + type(x).__name__ for x in labels] != [str(x) + type(x).__name__ for x in other]:
        assert stream(parent, *labels).spawn_key != stream(parent, *other).spawn_key


def test_integer_labels_are_numpy_spawn_and_names_never_collide_with_them() -> None:
    parent = np.random.SeedSequence(7)
    children = np.random.SeedSequence(7).spawn(5)
    for b in range(5):
        np.testing.assert_array_equal(
            stream(parent, b).generate_state(2), children[b].generate_state(2)
        )
    assert stream(parent, "0").spawn_key[0] >= 2**31 > stream(parent, 0).spawn_key[0]


@given(
    entropy=st.one_of(st.integers(0, 2**130), st.lists(st.integers(0, 2**32 - 1), min_size=1)),
    key=st.lists(st.integers(0, 2**40), max_size=4),
)
def test_a_seed_record_round_trips_through_text_and_remakes_the_root(entropy, key) -> None:
    seq = np.random.SeedSequence(entropy, spawn_key=tuple(key))
    rec = record(seq)
    assert SeedRecord.parse(str(rec)) == rec
    np.testing.assert_array_equal(rec.sequence().generate_state(4), seq.generate_state(4))


@pytest.mark.parametrize("text", ["", "x", "1/-2", "-1", "1//2"])
def test_malformed_seed_record_text_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="seed record must"):
        SeedRecord.parse(text)


# ------------------------------------------------------------------------------------------ stability
def _sweep(**change) -> Sweep:
    base = {
        "lrs": (0.05, 0.2),
        "momenta": (0.0, 0.5),
        "workers": (1, 4),
        "seeds": 2,
        "steps": 400,
        "seed": 11,
    }
    return Sweep("nq50", **(base | change))


def _rows(table: pd.DataFrame, workers: int, seeds: int) -> pd.DataFrame:
    rows = table[(table.workers == workers) & (table.seed < seeds)].drop(columns="point")
    return rows.reset_index(drop=True)


@pytest.mark.parametrize(
    "change",
    [{"workers": (1, 2, 4)}, {"workers": (4, 1)}, {"seeds": 3}],
    ids=["a point added", "points reordered", "a seed added"],
)
def test_adding_a_grid_point_or_a_seed_changes_no_existing_result(change) -> None:
    before = run_sweep(_sweep()).to_frame()
    after = run_sweep(_sweep(**change)).to_frame()
    for m in (1, 4):
        pd.testing.assert_frame_equal(_rows(before, m, 2), _rows(after, m, 2))
    assert before.attrs["seed"] == after.attrs["seed"] == "11"


def test_adding_a_figure_changes_no_existing_result(monkeypatch) -> None:
    """A new figure registered ahead of the others moves no stream of an existing one (streams are
    keyed by the figure's name, not by its place among the figures)."""
    import asyncsim.figures as figures

    before = figures.figure("staleness", scale="quick", rng=5).data
    extra = "aaa_new_figure"
    monkeypatch.setattr(figures, "FIGURES", {extra: None} | figures.FIGURES)
    after = figures.figure("staleness", scale="quick", rng=5).data
    pd.testing.assert_frame_equal(before, after)
    other_root = figures.figure("staleness", scale="quick", rng=6).data
    assert not before["empirical"].equals(other_root["empirical"])
