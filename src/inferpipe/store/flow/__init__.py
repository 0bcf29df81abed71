"""The flow-control policy of every store, as pure code: the state a decision needs goes in,
a plan comes out. Each dialect only loads that state and writes the plan.

- `admission`: runs as they are inserted (debounce, batch, idempotency, singleton, rate
  limit, fair queue tags, the reason a run waits).
- `claims`: which ready runs start (concurrency slots, throttles, fair turns and priority).
- `pacing`: the arithmetic (GCRA throttle starts, debounce/batch windows, fair queue tags).
- `reasons`: the status reasons flow control writes on runs.
"""
