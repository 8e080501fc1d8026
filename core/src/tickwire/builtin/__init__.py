"""Plugins shipped with core, registered through the same hooks as any installed plugin."""
