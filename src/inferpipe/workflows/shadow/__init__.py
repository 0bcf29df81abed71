"""Shadow runs: try a candidate (another version of a graph, or overrides) on live traffic.

`policy` keeps the policies and the cutover, `guard` keeps a shadow's side effects off the
outside world, `run` is the shadow function, `compare` compares a shadow with its primary
and `report` sums a policy's comparisons up. See docs/shadow.md.
"""
