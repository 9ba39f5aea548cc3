"""Loads and validates mappings/ into typed, frozen objects."""

from service.knowledge.knowledge import Knowledge
from service.knowledge.loader import load_knowledge

__all__ = ["Knowledge", "load_knowledge"]
