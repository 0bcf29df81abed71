"""inferpipe: durable execution for AI workloads."""
