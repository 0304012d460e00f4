"""Design-space sweeps (``bitgen sweep``): many points of train -> build -> bench -> check, run
on Ray, each a row of OUT/results.jsonl, and the Pareto front of accuracy against instructions
per inference under each board's limits (front.json, front.png).

- :mod:`.space`: the space file, its points and their ids
- :mod:`.point`: one point, through the bitgen commands
- :mod:`.results`: results.jsonl / results.csv
- :mod:`.front`: deployability, the Pareto front and its picture
- :mod:`.runner`: the points on Ray Tune (grid, random, the Optuna Pareto search)
- :mod:`.fuzzing`: the exactness property (:mod:`bitgen.fuzz`) at scale as Ray tasks
"""
