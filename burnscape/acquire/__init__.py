"""burnscape acquire stage."""
