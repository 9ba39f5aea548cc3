"""Loads and validates mappings/ into typed, frozen objects."""

from labinterp.knowledge.knowledge import Knowledge
from labinterp.knowledge.loader import load_knowledge

__all__ = ["Knowledge", "load_knowledge"]
