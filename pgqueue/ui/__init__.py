"""What a lesson shows: figures, panels and predictions read back."""
