"""The application layer: data pipelines, the training job, its report, the CLI.

It sits on top of the backend-neutral core (`keras_recu.ops`, `quantizers`,
`constraints`, `callbacks`, `layers`, `models`, `diagnostics`, `profile`)
and of the deployment layer (`keras_recu.deploy`, TensorFlow and LCE), and
nothing below imports it.

The training job, bottom up: `errors`, `recipes` (the authors' recipes as
data), `distribution` (strategies and backends), `rundir` (the run
directory's files and atomic writes), `config` (`TrainConfig`, validation,
--resume), `build` (model, optimizer, schedule, data stream),
`checkpointing` and `diagnostics_log` (the session's callbacks), `evaluate`
(the end of a run, and `evaluate`), `train` (the session), `cli` on top.
Beside them, light modules the command reads before Keras loads:
`dataset_names` (what `--dataset` takes) and `quiet_imports` (TensorFlow's
own log kept off the command's stderr).
"""
