"""burnscape cube stage."""
