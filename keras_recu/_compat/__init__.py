"""The one home of keras_recu's compatibility shims: each works around another library, says why, and is tested.

* `keras_internals`: the few private Keras attributes the package reads
  (the layers nested in a model, the calls of a functional graph);
  tests/test_compat.py fails if a Keras upgrade removes one.
* `legacy_keras`: `TF_USE_LEGACY_KERAS`, which makes `tf.keras` tf-keras for
  the larq front; it must act before TensorFlow loads, so it imports neither
  Keras nor TensorFlow (tests/test_compat_legacy_keras.py).
* `distribute`: Keras 3's `fit` on TensorFlow's multi-worker strategy.

This face imports nothing, so that `legacy_keras` can run before Keras loads.
No module outside this package reads a private attribute of another
library (tests/test_layout.py checks it).
"""
