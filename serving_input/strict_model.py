"""The base of every declared section (the pipeline config, the CSV layout, the
preprocessing ops): an unknown key is an error, and a parsed section cannot change."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that refuses unknown keys (a typo is reported, not ignored)
    and is frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
