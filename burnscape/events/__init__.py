"""burnscape events stage."""
