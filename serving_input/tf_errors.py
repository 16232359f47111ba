"""TensorFlow's runtime error messages, read for people.

An op that fails inside a SavedModel's functions reports its message wrapped in graph
noise: ``{{function_node __inference_...}}`` prefixes, ``[[{{node X}}]]`` lines and,
from a session, ``Graph execution error:`` with a Python traceback of where the node
was defined. These helpers take that apart: the message itself, the failing node, and
the sentence an assertion carries.
"""

from __future__ import annotations

import re

_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_NODE = re.compile(r"\{\{node ([^}]+)\}\}")
# tf.debugging.Assert renders its data as "[item] [item]"; a string item is the text.
_ASSERTION = re.compile(r"assertion failed: \[(.*?)\](?: \[|\s*$|\n)", re.S)


def failing_node(message: str) -> str | None:
    """The name of the innermost node the message names (``[[{{node X}}]]``), or None."""
    match = _NODE.search(message)
    return match.group(1) if match else None


def assertion_text(message: str) -> str | None:
    """The first item of a failed ``tf.debugging.Assert``'s data (the sentence it was
    given), or None when the message is not an assertion's."""
    match = _ASSERTION.search(message)
    if not match:
        return None
    # The op prints a string item C-escaped.
    return match.group(1).replace('\\"', '"').replace("\\\\", "\\")


def error_text(message: str) -> str:
    """The message without graph noise: what the op said, on one line."""
    text = _FUNCTION_NODE.sub("", message)
    kept = []
    in_traceback = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Detected at node"):
            # Where the node was defined: indented traceback lines (or "<stack traces
            # unavailable>"), then "Node: 'X'" in some versions, then the message.
            in_traceback = True
            continue
        if in_traceback:
            if (line[:1].isspace() or stripped == "<stack traces unavailable>"
                    or stripped.startswith("Node: ")):
                continue
            in_traceback = False
        if stripped and not stripped.startswith("[[") and stripped != "Graph execution error:":
            kept.append(stripped)
    return " ".join(kept).strip()
