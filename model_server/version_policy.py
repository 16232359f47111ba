"""ServableVersionPolicy: which of the versions found should be served.

``latest { num_versions: N }`` (default N = 1), ``all {}``, ``specific { versions }``,
read from a ``ModelConfig.model_version_policy``.
"""

from __future__ import annotations

from collections.abc import Iterable


class VersionPolicy:
    """Chooses the aspired versions among those available on disk."""

    def __init__(self, kind: str = "latest", num_versions: int = 1, versions=()):
        self.kind = kind
        self.num_versions = max(1, num_versions)
        self.versions = frozenset(versions)

    @classmethod
    def from_model_config(cls, model_config) -> VersionPolicy:
        """Reads ``model_version_policy`` from a ``ModelConfig`` (default: latest 1)."""
        policy = model_config.model_version_policy
        which = policy.WhichOneof("policy_choice")
        if which == "all":
            return cls("all")
        if which == "specific":
            return cls("specific", versions=policy.specific.versions)
        if which == "latest":
            return cls("latest", num_versions=policy.latest.num_versions or 1)
        return cls("latest", 1)

    def aspired(self, available: Iterable[int]) -> set[int]:
        """The versions to serve, out of those present."""
        available = sorted(set(available))
        if self.kind == "all":
            return set(available)
        if self.kind == "specific":
            return {v for v in available if v in self.versions}
        return set(available[-self.num_versions:])

    def __eq__(self, other) -> bool:
        return isinstance(other, VersionPolicy) and (
            (self.kind, self.num_versions, self.versions)
            == (other.kind, other.num_versions, other.versions)
        )

    def __repr__(self) -> str:
        if self.kind == "latest":
            return f"VersionPolicy(latest {{num_versions: {self.num_versions}}})"
        if self.kind == "specific":
            return f"VersionPolicy(specific {{versions: {sorted(self.versions)}}})"
        return "VersionPolicy(all {})"
