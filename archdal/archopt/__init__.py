"""Architecture optimisation during active learning (paper, section 4): CNNs whose depth and
width are inferred with the weights, and the fixed CNNs they are compared against."""
