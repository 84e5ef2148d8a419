"""What is learned: a loss (and summed metrics) per kind of problem; never imports train/."""
