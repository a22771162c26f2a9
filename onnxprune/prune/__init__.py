"""Step 3, pruning: the shrink loop (the paper's Algorithm 1: draw a group by its share of the
network's cost, cut a step of its channels), rounding, protected layers, then graph surgery once
and re-initialisation. Builds on `read` and `analysis`."""
