"""jaxdl: classic deep learning in JAX/Flax (linen), trained through one functional step.

Layout (imports point one way): experiments -> train -> (nn, tasks, data, metrics).
"""

__version__ = "0.1.0"
