import sqlite3

import pytest

from activeloss.report import aubc, mean_std, table
from activeloss.store import CycleResult, Store


def test_cycle_is_written_atomically_and_labels_never_duplicate(tmp_path):
    store = Store.in_folder(tmp_path)
    run = store.run_id("random", 0, {"seed": 0})
    assert store.run_id("random", 0, {"seed": 0}) == run  # same run on second use
    store.add_labels(run, 0, [(1, 0, 0, "initial"), (2, 1, 1, "initial")])
    store.record_cycle(run, CycleResult(0, 2, 1.0, 0.1, {"accuracy": 0.5}, [(5, 0.9), (7, 0.8)],
                                        [(5, 1, 1, "simulated"), (7, 0, 0, "simulated")]))
    assert store.labels(run) == [(1, 0, 0), (2, 1, 0), (5, 1, 1), (7, 0, 1)]
    # a cycle that would label item 5 again fails as a whole: no metrics, no query, no cycle row
    with pytest.raises(sqlite3.IntegrityError):
        store.record_cycle(run, CycleResult(1, 4, 1.0, 0.1, {"accuracy": 0.7}, [(5, 0.3)], [(5, 1, 1, "simulated")]))
    assert store.finished_cycles(run) == [0]
    assert len(store.results()) == 1
    assert store.conn.execute("SELECT COUNT(*) FROM queries WHERE cycle = 1").fetchone()[0] == 0


def test_results_rows_and_csv(tmp_path):
    store = Store.in_folder(tmp_path)
    for trial, acc in enumerate([0.5, 0.7]):
        run = store.run_id("llal", trial, {})
        store.record_cycle(run, CycleResult(0, 10, 2.0, 0.5, {"accuracy": acc, "ranking_accuracy": 0.6}))
    store.write_results_csv(tmp_path / "results.csv")
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0] == "strategy,trial,cycle,labeled,accuracy,ranking_accuracy,train_seconds,query_seconds"
    assert lines[1].startswith("llal,0,0,10,0.5,0.6,2,0.5")
    assert len(lines) == 3


def test_aubc_and_mean_std():
    assert aubc([10, 20], [0.5, 0.7], 100) == pytest.approx(0.6)
    assert aubc([10, 20, 40], [0.5, 0.7, 0.7], 100) == pytest.approx((0.1 * 0.6 + 0.2 * 0.7) / 0.3)
    assert aubc([10], [0.4], 100) == 0.4
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert mean_std([1.0]) == (1.0, 0.0)


def test_table_shows_mean_std_per_cycle_and_aubc():
    rows = [
        dict(strategy="random", trial=t, cycle=c, labeled=10 * (c + 1), accuracy=a)
        for t, accs in enumerate([[0.5, 0.6], [0.7, 0.8]]) for c, a in enumerate(accs)
    ]
    text = table(rows, pool_size=100)
    assert "mean ± std over 2 trials" in text
    assert "| 60.00 ± 14.14 |" in text  # cycle 0: 0.5 and 0.7
    assert "| 70.00 ± 14.14 |" in text
    assert "AUBC" in text and "65.00 ± 14.14" in text
