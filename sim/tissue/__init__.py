"""Tissue models behind one small interface, so the generator simulator does not care which it runs."""

from sim.tissue.base import TissueModel, TissueReading
from sim.tissue.lumped import LumpedTissue

__all__ = ["LumpedTissue", "TissueModel", "TissueReading"]
