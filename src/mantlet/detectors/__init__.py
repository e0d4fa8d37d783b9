"""Detectors: one module (or package) each, registered by name in
``mantlet.core.registry``. Importing this package imports none of them."""
