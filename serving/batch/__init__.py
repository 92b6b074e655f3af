"""The nightly batch: `run` (one run's `RunContext`, the per-chunk work and the driver's finish), the
engines `local` and `spark`, and `store` (where worklists go, whole or not at all).
`serving.batch.run_batch` is the local engine's entry point."""

from serving.batch.local import run_batch
from serving.batch.run import BatchResult, RunContext

__all__ = ["BatchResult", "RunContext", "run_batch"]
