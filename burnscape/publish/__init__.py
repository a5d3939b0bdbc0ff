"""burnscape publish stage."""
