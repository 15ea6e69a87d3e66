"""The Ray Tune layer, the only part of archdal that imports Ray.

`presets` and `grid` expand named grids into `RunConfig`s and check them (no Ray);
`hparams` reads and writes tuned hyperparameter files; `tune` runs one Tune trial per
trajectory (and per Focus 2 pre-optimization) with a report and checkpoint per round;
`cli` is the command line of `sweeps/*.py`.
"""
