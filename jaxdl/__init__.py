"""jaxdl: classic deep learning in JAX/Flax (linen), trained through one functional step.

Layout (imports point one way): experiments -> run -> recipes -> (train, tasks, nn, data);
cli -> run -> recipes.
"""

__version__ = "0.1.0"
