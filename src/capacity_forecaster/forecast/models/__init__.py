"""forecast models package."""
