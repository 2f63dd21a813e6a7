"""Where templates shared by several services live (the officer pages' frame)."""

from pathlib import Path

SHARED_TEMPLATES = Path(__file__).parent / "templates"
