"""The hook specifications of sseplug (pluggy project "sseplug") and the markers plugins use."""

from __future__ import annotations

import pluggy

PROJECT = "sseplug"

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a function in this module as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a plugin function as the implementation of the hook of the same name."""
