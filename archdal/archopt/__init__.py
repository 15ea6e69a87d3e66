"""Architecture optimisation during active learning (paper, section 4)."""
