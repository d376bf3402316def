"""The paper's experiments as data: ``specs/<name>.toml`` run by one runner (``derl reproduce``).

:func:`reproduce` generates or reuses each experiment's datasets, trains every method
(resuming where a run stopped), evaluates, and writes ``results.json``, ``results.md`` (the
paper's numbers beside ours where known) and PNG figures (:mod:`.figures`). See
``docs/reproduce.md``.
"""

from .runner import EXPERIMENTS, ReproduceError, load_spec, reproduce

__all__ = ["EXPERIMENTS", "ReproduceError", "load_spec", "reproduce"]
