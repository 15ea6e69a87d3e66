"""Focus 2: CNNs whose architecture is fixed, inferred (Depth-Dropout, BBDropout) or searched
(PDARTS) during active learning (paper, section 4)."""
