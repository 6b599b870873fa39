"""The application layer: data pipelines, the training job, its report, the CLI.

It sits on top of the backend-neutral core (`keras_recu.ops`, `quantizers`,
`constraints`, `callbacks`, `layers`, `models`, `diagnostics`, `profile`)
and of the deployment layer (`keras_recu.deploy`, TensorFlow and LCE), and
nothing below imports it.
"""
