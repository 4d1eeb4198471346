"""The base of every settings section, and the port types several sections share."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Port = Annotated[int, Field(ge=1, le=65535)]
OptionalPort = Annotated[int, Field(ge=0, le=65535)]
"""A listening port where 0 turns the listener off."""


class Section(BaseModel):
    """A section of `Settings`: frozen, no unknown keys, defaults validated too."""

    # validate_default: cross-field rules must also hold when one side keeps its default.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
