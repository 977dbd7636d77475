"""Training in the background: a separate process per round, its progress in the store.

The labeling server must answer every keypress at once, so it never trains itself: it starts
``activeloss fit PROJECT --job N`` (then, with ``--then-query``, the next batch) as a child
process, which writes its epoch and its result to the ``jobs`` table the page polls.  One job
runs at a time; a job whose process died is marked failed when next looked at.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .project import Project
from .records import Job


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)  # our own child: reap it if it has ended
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child (another server started it): ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_job(project: Project) -> Job | None:
    """The latest job, with a running one whose process is gone marked failed."""
    job = project.records.job()
    if job is not None and job.status == "running" and not _alive(job.pid):
        project.records.update_job(job.id, status="failed", message="the training process ended without finishing")
        job = project.records.job(job.id)
    return job


def start_training(project: Project, then_query: bool = True) -> Job:
    """Start a background fit (and, with ``then_query``, a query of the next batch with the
    project's strategy and budget); returns the running job (the one already running, if any)."""
    job = current_job(project)
    if job is not None and job.status == "running":
        return job
    job_id = project.records.start_job(None)
    command = [sys.executable, "-m", "activeloss", "fit", str(project.folder), "--job", str(job_id)]
    if then_query:
        command.append("--then-query")
    log = open(Path(project.folder) / "training.log", "ab")
    try:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()
    project.records.update_job(job_id, pid=proc.pid)
    found = project.records.job(job_id)
    assert found is not None
    return found
