"""Per-key limits: requests and tokens per minute, and budgets per period.

Counters live in this process by default (`memory`) or in Redis (`redis_store`) when
`REDIS_URL` is set, so a limit holds across replicas. `limiter` decides; the
backends only count.
"""

from gateway.limits.limiter import Admission, Limiter, estimate_cost
from gateway.limits.memory import MemoryBackend

__all__ = ["Admission", "Limiter", "MemoryBackend", "estimate_cost"]
