"""The declarative operations, one module per kind of raw feature.

Each module holds the YAML declaration of its op (a pydantic model) and the
TensorFlow / tf.Transform code it compiles to; :mod:`transform.preprocessing` puts
them together into one ``preprocessing_fn``. Every op produces one of the kinds of
the transformed-feature contract (number, categorical id, id sequence, dense vector,
image) with a static shape beyond the batch dimension.
"""
