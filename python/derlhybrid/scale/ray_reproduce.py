"""The runs of ``derl reproduce`` as Ray tasks (``--engine ray [--address ADDR]``).

:func:`derlhybrid.experiments.reproduce` plans an experiment as before (datasets, runs,
shared first stages of pipelines, NCL teachers) and hands the work to :func:`run_tasks`:
every call — one run (a seed × method × group; a pipeline, whose stages run one after the
other, each in its own resumable stage folder), or one shared first stage — becomes one Ray
task of one CPU, writing into its own run folder under ``--out``, exactly what ``--jobs N``
would write there. The driver only gathers the rows and writes the results files, so they
equal those of ``--jobs 1`` (the runs train with one intra-op thread, as with ``--jobs N``,
and are evaluated with the driver's number of intra-op threads: on nodes like the driver's
the metrics are equal bit for bit).

Resuming: a run folder holds checkpoints and finished metrics, so rerunning the same command
after the driver was killed skips finished runs and resumes the others from their last
checkpoint. A task whose worker process dies (killed, out of memory, a lost node) is retried
by Ray (``max_retries``, default 2): the retry resumes the run from its checkpoint. A task
that raises is not retried (a configuration error would only fail again); the error is
re-raised in the driver.

Every node must see ``--out`` at the same path (a shared file system): the tasks read the
datasets the driver generated there and write their run folders there. Importing this
module imports no Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["run_tasks"]


def _call(fn: Callable, args: tuple, threads: int) -> Any:
    import torch

    # training runs with the run's own train.threads (1, as with --jobs N); the evaluation
    # after it with the driver's intra-op threads, as --jobs 1 evaluates (a reduction over
    # other threads would round differently: Ray starts its workers with one thread)
    torch.set_num_threads(threads)
    return fn(*args)


def run_tasks(
    calls: Sequence[tuple[str, Callable, tuple]],
    *,
    address: str | None = None,
    max_retries: int = 2,
    on_done: Callable[[str], None] | None = None,
) -> list[Any]:
    """Run ``fn(*args)`` for every ``(label, fn, args)`` of ``calls`` as a Ray task of one
    CPU on the cluster at ``address`` (None: ``$RAY_ADDRESS`` or a new local instance; a
    process already connected stays on its cluster); returns the results in the order of
    ``calls``. ``on_done(label)`` is called as each finishes. The first task that raises
    cancels the others and its exception is raised here (ValueErrors as they are, others
    with the label of the task)."""
    from ._ray import connect, require

    if not calls:
        return []
    ray = require()
    from ray.exceptions import RayError, RayTaskError

    connected = connect(address)
    try:
        import torch

        threads = torch.get_num_threads()
        task = ray.remote(_call).options(num_cpus=1, max_retries=max_retries)
        refs = {task.remote(fn, tuple(args), threads): k for k, (_, fn, args) in enumerate(calls)}
        results: dict[int, Any] = {}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                k = refs[done[0]]
                try:
                    results[k] = ray.get(done[0])
                except RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, ValueError):
                        raise cause from None
                    what = f"{type(cause).__name__}: {cause}" if cause is not None else exc
                    raise RuntimeError(f"{calls[k][0]} failed on Ray ({what})") from None
                except RayError as exc:  # its worker died, past the retries
                    first = (str(exc).strip().splitlines() or [""])[0][:200]
                    raise RuntimeError(
                        f"{calls[k][0]}: its Ray worker died {max_retries + 1} times ({first}); "
                        "rerun the same command to resume from the run's checkpoint"
                    ) from None
                if on_done is not None:
                    on_done(calls[k][0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
        return [results[k] for k in range(len(calls))]
    finally:
        if connected:
            ray.shutdown()
