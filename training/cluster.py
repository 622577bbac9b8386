"""Where this process stands in a multi-worker training job, read from ``TF_CONFIG``.

``TF_CONFIG`` is TensorFlow's standard way to describe a cluster; Kubeflow's TFJob, the
local launcher ``scripts/train-multiworker.sh`` and any other launcher set it, e.g.::

    {"cluster": {"worker": ["host-a:12345", "host-b:12345"]},
     "task": {"type": "worker", "index": 1}}

The chief is the ``chief`` task when the cluster names one, else worker 0. Only the chief
writes into the run directory; every other worker writes the same files into a temporary
directory that is removed when it finishes (as TensorFlow's multi-worker guide advises:
all workers run the same saving code, because saving may take part in collective ops,
but only the chief's copy is kept).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the task types that train (an "evaluator" or "ps" task does not take part in the
# synchronous all-reduce of MultiWorkerMirroredStrategy)
TRAINING_TASKS = ("chief", "worker")


@dataclass(frozen=True)
class Cluster:
    """This process's place in the job: ``workers`` training processes, this one is
    ``task_type``/``task_index``."""

    workers: int = 1
    task_type: str = "worker"
    task_index: int = 0
    from_tf_config: bool = False
    has_chief_task: bool = False  # the cluster names a "chief" task besides its workers

    @property
    def multi_worker(self) -> bool:
        """True when ``TF_CONFIG`` describes a cluster (even one of a single worker)."""
        return self.from_tf_config

    @property
    def is_chief(self) -> bool:
        return self.task_type == "chief" or (
            self.task_type == "worker" and self.task_index == 0 and not self.has_chief_task
        )

    @property
    def worker_rank(self) -> int:
        """0 for the chief, then 1..workers-1 (the order of the input shards)."""
        if self.task_type == "chief":
            return 0
        return self.task_index + (1 if self.has_chief_task else 0)

    @property
    def name(self) -> str:
        return f"{self.task_type}:{self.task_index}"


def cluster_from_env(environ: dict[str, str] | None = None) -> Cluster:
    """The :class:`Cluster` that ``TF_CONFIG`` describes; a single worker without it."""
    raw = (environ if environ is not None else os.environ).get("TF_CONFIG", "").strip()
    if not raw:
        return Cluster()
    try:
        config: dict[str, Any] = json.loads(raw)
        spec = config["cluster"]
        task = config["task"]
        task_type, task_index = str(task["type"]), int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"TF_CONFIG is not a cluster spec with a task: {exc}") from exc
    if task_type not in TRAINING_TASKS:
        raise ValueError(
            f"TF_CONFIG task type {task_type!r}: this job trains only on {TRAINING_TASKS}"
        )
    workers = sum(len(spec.get(t, [])) for t in TRAINING_TASKS)
    if task_index >= len(spec.get(task_type, [])):
        raise ValueError(f"TF_CONFIG task {task_type}:{task_index} is not in its cluster")
    return Cluster(
        workers=workers,
        task_type=task_type,
        task_index=task_index,
        from_tf_config=True,
        has_chief_task=bool(spec.get("chief")),
    )


@contextmanager
def write_dir(run_dir: Path, cluster: Cluster) -> Iterator[Path]:
    """The directory this worker writes its run files into: ``run_dir`` on the chief,
    else a temporary directory removed on exit (even when training fails)."""
    if cluster.is_chief:
        yield run_dir
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"faceid-train-{cluster.task_type}{cluster.task_index}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
