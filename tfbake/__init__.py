"""tfbake: the config model and the CLI, the only package that knows every stage."""
