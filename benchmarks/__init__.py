"""The benchmarks of keras-recu: scripts run as modules from the repository root.

    python -m benchmarks.train_step floor --quick
    python -m benchmarks.ablation budgets

Run so, the repository root is on `sys.path`: the scripts import the
package (`keras_recu`) of this checkout and their siblings as
`benchmarks.<module>`, with nothing installed and no path set by hand.
What each script measures and the recorded figures: BENCHMARKS.md.
"""
