"""Parameter pytrees: the one parameter count every module, recipe and report uses."""

import jax
import numpy as np


def count_params(params) -> int:
    """Number of scalars in a parameter pytree (arrays or shape-only `ShapeDtypeStruct`s)."""
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(params)))
