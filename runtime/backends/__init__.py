"""Backends: one module each, all behind the Component interface (base.py) and listed in registry.py."""
