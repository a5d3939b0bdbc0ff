"""burnscape model stage."""
