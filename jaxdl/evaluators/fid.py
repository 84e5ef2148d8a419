"""A "classifier FID": the Frechet distance between Gaussians fitted to a small classifier's
penultimate-layer features of two image sets (e.g. generated vs real test images).

    FID = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

mu, S: the mean and covariance (unbiased, N - 1) of the features; the matrix square root is
`scipy.linalg.sqrtm` (its tiny imaginary part from round-off is dropped). This is NOT the
Inception FID of the literature: the features come from a classifier trained on the same
dataset (here jaxdl's `ConvNet`, 128 features), so the numbers are comparable only with
each other (same classifier, same number of images), not with published FIDs. With fewer
images than features (128) the covariances are singular and the estimate is poor.
"""

import warnings

import jax
import numpy as np


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets."""
    import scipy.linalg  # here: at import it would slow every jaxdl process

    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # singular with fewer images than features: fine here
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(covmean).all():  # regularise, as pytorch-fid does
            eps = 1e-6 * np.eye(a.shape[1])
            covmean = scipy.linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = np.real(covmean)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b)
                 - 2.0 * np.trace(covmean))


def make_feature_fn(model, layer: str = "fc1"):
    """jitted `(variables, images) -> (logits, features)`; features = relu(`layer` output),
    the penultimate layer of `jaxdl.nn.ConvNet` with one dense layer."""

    def fn(variables, images):
        logits, state = model.apply(variables, images, train=False,
                                    capture_intermediates=lambda mdl, _: mdl.name == layer)
        return logits, jax.nn.relu(state["intermediates"][layer]["__call__"][0])

    return jax.jit(fn)


def features(feature_fn, variables, images: np.ndarray, batch_size: int = 500):
    """(logits, features) of all `images` (N, H, W, C) float in [0, 1], as numpy."""
    logits, feats = [], []
    for i in range(0, len(images), batch_size):
        out_l, out_f = feature_fn(variables, images[i:i + batch_size])
        logits.append(np.asarray(out_l))
        feats.append(np.asarray(out_f))
    return np.concatenate(logits), np.concatenate(feats)
