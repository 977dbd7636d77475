"""``--executor submitit|ray``: the (strategy, trial) units on a Slurm cluster or a Ray cluster.

The engines schedule, place, retry and requeue; this module only submits units
(:mod:`.units`), follows them, and merges what they commit.  Each unit writes its own shard
and publishes a snapshot after every cycle; the driver (this process) merges each new snapshot
into the main store, so ``activeloss report OUT`` shows every finished cycle while units still
run.  A unit that fails is reported in one line naming it; the others go on, and the run then
ends with exit status 3 for ``--resume``, which submits only the units not done.

Both engines need ``OUT`` (and the data) on a filesystem every machine sees, as any Slurm
job does.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config import Settings
from ..errors import ConfigError, RunInterrupted
from ..store import Store
from .checkpoints import Checkpoints
from .plan import Run
from .units import SHARDS, SNAPSHOT, STARTED, ShardUnit, run_shard, shard_folder

#: seconds between two looks at the units
POLL_SECONDS = 1.0
#: seconds between two progress lines in a log (a terminal gets a live bar instead)
REPORT_SECONDS = 60.0


@dataclass
class Unit:
    """One (strategy, trial) as the driver follows it."""

    run: Run
    trial: int
    folder: Path
    state: str = "queued"  # queued, running, finished, failed
    handle: Any = None
    submitted: float = 0.0
    merged: float = 0.0  # mtime of the snapshot merged last
    error: str = ""
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.run.name} trial {self.trial}"


class Backend(Protocol):
    def __init__(self, s: Settings, out: Path) -> None: ...
    def submit(self, args: tuple[Any, ...]) -> Any: ...
    def poll(self, handle: Any) -> tuple[str, Any]: ...
    def cancel(self, handle: Any) -> None: ...
    def logs(self, handle: Any) -> str: ...
    def close(self) -> None: ...


class Submitit:
    """Slurm through submitit (its local executor where there is no Slurm): one job per unit."""

    def __init__(self, s: Settings, out: Path) -> None:
        try:
            import submitit
        except ImportError:
            raise ConfigError("--executor submitit needs submitit: pip install 'activeloss[slurm]'") from None
        # a job stopped at its time limit or preempted is requeued this many times (ShardUnit.checkpoint)
        self.executor = submitit.AutoExecutor(folder=out / "submitit", slurm_max_num_timeout=s.retries)
        self.executor.update_parameters(**submitit_parameters(s, self.executor.cluster))

    def submit(self, args: tuple[Any, ...]) -> Any:
        return self.executor.submit(ShardUnit(), *args)

    def poll(self, job: Any) -> tuple[str, Any]:
        """("pending" | "finished" | "failed", the outcome or the error)."""
        if not job.done():
            return "pending", None
        try:
            return "finished", job.result()
        except Exception as exc:  # submitit re-raises the unit's error, or reports the job's death
            return "failed", _last_line(str(exc)) or type(exc).__name__

    def cancel(self, job: Any) -> None:
        job.cancel(check=False)

    def logs(self, job: Any) -> str:
        return str(job.paths.stderr)

    def close(self) -> None: ...


def submitit_parameters(s: Settings, cluster: str) -> dict[str, Any]:
    """What submitit is told for one unit: the Slurm parameters on Slurm, the shared ones elsewhere."""
    params: dict[str, Any] = {"name": "activeloss", "timeout_min": s.time_limit, "nodes": 1, "tasks_per_node": 1,
                              "cpus_per_task": s.cpus_per_unit, "gpus_per_node": s.gpus_per_unit}
    if s.mem_gb is not None:
        params["mem_gb"] = s.mem_gb
    if cluster == "slurm":
        if s.partition:
            params["slurm_partition"] = s.partition
    elif s.partition:
        raise ConfigError(f"--partition {s.partition}: there is no Slurm here (submitit found {cluster})")
    return params


class Ray:
    """Ray core: one task per unit, retried (from its shard) when its worker dies."""

    def __init__(self, s: Settings, out: Path) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'activeloss[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            cpus = None if s.ray_address else max(os.cpu_count() or 1, s.cpus_per_unit)  # a local Ray: this machine
            ray.init(address=s.ray_address, num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        self.remote = ray.remote(run_shard).options(num_cpus=s.cpus_per_unit, num_gpus=s.gpus_per_unit,
                                                    max_retries=s.retries, retry_exceptions=False)

    def submit(self, args: tuple[Any, ...]) -> Any:
        return self.remote.remote(*args)

    def poll(self, ref: Any) -> tuple[str, Any]:
        ready, _ = self.ray.wait([ref], timeout=0)
        if not ready:
            return "pending", None
        try:
            return "finished", self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            return "failed", _last_line(str(cause)) or type(cause).__name__

    def cancel(self, ref: Any) -> None:
        self.ray.cancel(ref, force=True)

    def logs(self, ref: Any) -> str:
        return "the Ray workers' logs, e.g. /tmp/ray/session_latest/logs"

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


BACKENDS: dict[str, type[Backend]] = {"submitit": Submitit, "ray": Ray}


def run_on_cluster(store: Store, units: list[tuple[Run, int]], settings: Settings, out: Path, bar: Any,
                   log: bool) -> None:
    """Run ``units`` with ``settings.executor``, merging their shards into ``store`` as they go."""
    for run, trial in units:  # run ids in the sequential order, whatever finishes first
        store.run_id(run.name, trial, run.record())
    followed = [Unit(run, trial, shard_folder(out, run.name, trial)) for run, trial in units]
    for unit in followed:  # an earlier attempt's committed cycles, and the units already done
        merge(store, unit, out)
        if store.run_status(unit.run.name, unit.trial) == "done":
            unit.state = "finished"
    experiment = store.get_meta("settings")
    backend = BACKENDS[settings.executor](settings, out)
    limit = settings.max_running or len(followed)
    last_report = 0.0
    try:
        while any(u.state in ("queued", "running") for u in followed):
            active = sum(u.state == "running" or (u.state == "queued" and u.handle is not None) for u in followed)
            for unit in followed:
                if unit.state == "queued" and unit.handle is None and active < limit:
                    unit.handle = backend.submit((experiment, str(out), unit.run.name, unit.trial))
                    unit.submitted = time.time()
                    active += 1
            for unit in followed:
                if unit.handle is None or unit.state not in ("queued", "running"):
                    continue
                if unit.state == "queued" and _started_after(unit):
                    unit.state = "running"
                merge(store, unit, out)
                status, value = backend.poll(unit.handle)
                hint = f" (see {backend.logs(unit.handle)})"
                if status == "finished" and isinstance(value, dict) and value.get("status") == "error":
                    status, value, hint = "failed", value.get("message", ""), ""  # the user's to fix: no log needed
                if status == "finished":
                    merge(store, unit, out, finished=True)
                    unit.state, unit.outcome = "finished", value or {}
                elif status == "failed":
                    unit.state, unit.error = "failed", str(value)
                    print(f"activeloss: {unit.name} failed: {unit.error}{hint}; the other units go on",
                          file=sys.stderr, flush=True)
            bar.update(store.count_evaluated() - bar.n)
            bar.set_postfix_str(progress_text(followed), refresh=False)
            if log and time.time() - last_report >= REPORT_SECONDS:
                print(f"activeloss: units {progress_text(followed)}", file=sys.stderr, flush=True)
                last_report = time.time()
            if any(u.state in ("queued", "running") for u in followed):
                time.sleep(POLL_SECONDS)
    except BaseException:  # Ctrl-C or a driver failure: stop what was submitted, keep what was merged
        for unit in followed:
            if unit.handle is not None and unit.state in ("queued", "running"):
                backend.cancel(unit.handle)
        raise
    finally:
        backend.close()
        store.write_results_csv(out / "results.csv")
        bar.update(store.count_evaluated() - bar.n)
    failed = [u for u in followed if u.state == "failed"]
    if failed:
        names = "; ".join(f"{u.name} ({u.error})" for u in failed)
        raise RunInterrupted(f"{len(failed)} of {len(followed)} units failed: {names}; the others' results are "
                             f"kept: continue with activeloss run --resume --out {out}")


def progress_text(units: list[Unit]) -> str:
    """``2 queued, 3 running, 5 finished, 0 failed``."""
    return ", ".join(f"{sum(u.state == s for u in units)} {s}" for s in ("queued", "running", "finished", "failed"))


def merge(store: Store, unit: Unit, out: Path, finished: bool = False) -> None:
    """Merge the unit's snapshot into ``store`` if it changed since the last merge (and, once the
    unit is done, the models it kept)."""
    snapshot = unit.folder / SNAPSHOT
    if not snapshot.is_file():
        return
    mtime = snapshot.stat().st_mtime_ns
    if mtime == unit.merged and not finished:
        return
    shard = Store.read_only(snapshot)
    try:
        status = store.adopt_run(shard, unit.run.name, unit.trial)
        source = shard.conn.execute("SELECT id FROM runs WHERE strategy = ? AND trial = ?",
                                    (unit.run.name, unit.trial)).fetchone()
    finally:
        shard.close()
    unit.merged = mtime
    if status == "done" and source is not None:
        _copy_models(unit.folder, int(source[0]), out, store.run_id(unit.run.name, unit.trial, unit.run.record()))


def _copy_models(folder: Path, source: int, out: Path, dest: int) -> None:
    """The checkpoints the unit kept, under the main store's run id (for ``Learner.open(OUT)``)."""
    theirs, ours = Checkpoints(folder, source), Checkpoints(out, dest)
    assert theirs.dir is not None and ours.dir is not None
    for path in sorted(theirs.dir.glob(f"run{source}-cycle*.pt")) if theirs.dir.is_dir() else []:
        cycle = int(path.stem.rsplit("cycle", 1)[1])
        target = ours.path(cycle)
        if not target.exists():
            ours.dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)


def _started_after(unit: Unit) -> bool:
    started = unit.folder / STARTED
    return started.is_file() and started.stat().st_mtime >= unit.submitted - 1


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def check_resume(out: Path, executor: str, store: Store) -> None:
    """A run's units stay with the kind of executor that started them: a shard is not a local run
    (submitit and ray may take each other's place)."""
    sharded = (out / SHARDS).is_dir() and any((out / SHARDS).iterdir())
    if sharded and executor == "local":
        raise ConfigError(f"{out} ran its units with a cluster executor (their stores are in {out / SHARDS}); "
                          "resume it with --executor submitit or --executor ray")
    if not sharded and executor != "local" and store.count_evaluated():
        raise ConfigError(f"{out} ran its units on this machine; resume it without --executor {executor}")
