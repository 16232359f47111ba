"""The declarative operations, one module per kind of raw feature.

Each module holds the TensorFlow / tf.Transform code an op compiles to; the op's YAML
declaration (a pydantic model) is in :mod:`tfbake.transform.preprocessing_config`, which
loads no TensorFlow, and :mod:`tfbake.transform.preprocessing` puts the ops together into one
``preprocessing_fn``. Every op produces one of the kinds of the transformed-feature
contract (number, categorical id, id sequence, dense vector, image) with a static
shape beyond the batch dimension.
"""
