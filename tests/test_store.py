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


def test_a_learner_writes_a_cycle_in_steps_each_its_own_transaction(tmp_path):
    """fit row, then metrics, then the query (pending until labeled), then the labels: each step is
    committed on its own, so a process stopped between two leaves a state another continues from."""
    store = Store.in_folder(tmp_path)
    run = store.run_id("llal", 0, {"seed": 0})
    store.add_labels(run, 0, [(1, 0, 0, "initial"), (2, 2, 2, "initial")])
    store.record_fit(run, 0, 2, 1.5)
    assert store.finished_cycles(run) == [0] and not store.evaluated(run, 0) and store.count_evaluated() == 0
    assert store.results() == [dict(strategy="llal", trial=0, cycle=0, labeled=2, train_seconds=1.5, query_seconds=0.0,
                                    eval_seconds=0.0, diagnostics_seconds=0.0, wall_seconds=1.5)]
    with pytest.raises(sqlite3.IntegrityError):  # a cycle is trained once
        store.record_fit(run, 0, 2, 1.0)
    store.record_evaluation(run, 0, {"accuracy": 0.5}, {"per_class_accuracy": [0.5, None]})
    store.record_evaluation(run, 0, {"accuracy": 0.6})  # evaluated again: replaced, not duplicated
    assert store.evaluated(run, 0) and store.count_evaluated() == 1 and store.results()[0]["accuracy"] == 0.6
    assert store.array(run, 0, "per_class_accuracy") == [0.5, None]
    store.record_query(run, 0, [(5, 0.9), (7, 0.8)], 0.25)
    store.record_query(run, 0, [(9, None)], 0.25)  # a second query of the cycle extends its batch
    assert store.queried(run, 0) == [(5, 0.9), (7, 0.8), (9, None)]
    assert store.pending(run) == [(0, 5, 0.9), (0, 7, 0.8), (0, 9, None)]
    assert store.results()[0]["query_seconds"] == 0.5
    store.add_labels(run, 1, [(7, 1, 1, "user")])
    assert store.pending(run) == [(0, 5, 0.9), (0, 9, None)]
    with pytest.raises(sqlite3.IntegrityError):  # item 7 again: nothing of the call is written
        store.add_labels(run, 1, [(5, 0, 0, "user"), (7, 2, 2, "user")])
    assert store.pending(run) == [(0, 5, 0.9), (0, 9, None)]
    assert store.labels(run) == [(1, 0, 0), (2, 2, 0), (7, 1, 1)]
    # class indices are stored as SQLite integers (readable in SQL), other targets round-trip
    assert store.conn.execute("SELECT DISTINCT typeof(label), typeof(true_label) FROM labels").fetchall() == \
        [("integer", "integer")]
    store.add_labels(run, 1, [(5, 2.5, None, "user"), (9, [1.0, 2.0], None, "user")])
    assert store.labels(run)[-3:] == [(5, 2.5, 1), (7, 1, 1), (9, [1.0, 2.0], 1)] and store.pending(run) == []
    store.close()
    again = Store.in_folder(tmp_path)  # every step was committed
    assert again.finished_cycles(run) == [0] and again.evaluated(run, 0) and len(again.labels(run)) == 5
    again.close()


def test_in_memory_store_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    memory = Store.in_memory()
    run = memory.run_id("random", 0, {})
    memory.record_fit(run, 0, 3, 0.1)
    assert memory.folder is None and memory.finished_cycles(run) == [0]
    assert not list(tmp_path.iterdir())
    assert Store.in_folder(tmp_path).folder == tmp_path and (tmp_path / "store.sqlite").is_file()


def test_results_rows_and_csv(tmp_path):
    store = Store.in_folder(tmp_path)
    for trial, acc in enumerate([0.5, 0.7]):
        run = store.run_id("llal", trial, {})
        store.record_cycle(run, CycleResult(0, 10, 2.0, 0.5, {"accuracy": acc, "ranking_accuracy": 0.6}))
    store.write_results_csv(tmp_path / "results.csv")
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0] == ("strategy,trial,cycle,labeled,accuracy,ranking_accuracy,train_seconds,query_seconds,"
                        "eval_seconds,diagnostics_seconds,wall_seconds")
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
