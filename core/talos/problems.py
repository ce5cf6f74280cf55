"""The problems a worker config can have, each naming its key."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InputError, bounded


@dataclass(frozen=True)
class TalosProblem:
    """One thing wrong with a Talos config: the key path in the document and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return bounded(f"{self.path}: {self.message}" if self.path else self.message)


class WorkerConfigError(InputError):
    """The worker config would not boot or join; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[TalosProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(
            f"the Talos worker config {source} has {len(problems)} problem(s):\n{lines}"
        )
