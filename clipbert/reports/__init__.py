"""Pages people look at: prediction reports, training curves."""
