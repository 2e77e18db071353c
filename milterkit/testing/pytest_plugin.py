"""pytest fixtures and assertion helpers for milters (registered by entry point)."""
