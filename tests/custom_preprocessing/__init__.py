"""A user's own ``preprocessing_fn``, as a package the Beam workers can import
(``preprocessing_fn: tests.custom_preprocessing.features:preprocessing_fn``)."""
