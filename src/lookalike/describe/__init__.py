"""Descriptors: decoded image -> vector."""

from lookalike.describe.base import Descriptor, create_descriptor, descriptor_names, register

__all__ = ["Descriptor", "create_descriptor", "descriptor_names", "register"]
