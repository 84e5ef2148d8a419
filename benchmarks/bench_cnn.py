"""The reference CNN (MyNet) in jaxdl vs the reference's PyTorch MY_NET, on this CPU.

    python -m benchmarks.bench_cnn [--quick]

Cases (each side in its own process, interleaved A B A B after warm-up):
  train_b64, train_b256  one train step (forward, backward, Adam with weight decay 1e-4,
                         cross-entropy, the step's metrics) on a fixed batch of 3x48x48 images
  infer_b256             eval-mode logits of a batch of 256
  epoch                  a whole epoch of the embedded MNIST subset (mnist_5k, 4,000 digits)
                         with the reference's augmentation: jaxdl's `fit` (on-device
                         preprocess inside the step; its end-of-epoch orbax checkpoint
                         included) vs the peer's DataLoader with the reference transforms on
                         the CPU and its reference training loop. Each repetition then times
                         bare steps on a fixed batch, for the epoch / bare-step ratio.
  matmul_peak            a 2048^3 fp32 matmul: this CPU's measured peak (best repetition)
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

IMAGE = 48
NUM_CLASSES = 10
MATMUL_N = 2048


def mynet_layer_flops(image: int = IMAGE, num_classes: int = NUM_CLASSES) -> dict[str, int]:
    """Forward FLOPs (2 per multiply-add) of each MyNet layer, from its shapes.

    (name, kind, input channels, output channels, output side) for the 3x3 'same' convs;
    (name, in, out) for the dense layers. Pooling, ReLU and the bias adds are left out.
    """
    convs = [("conv1", 3, 32, image), ("conv2", 32, 64, image), ("conv3", 64, 128, image // 2)]
    flat = 128 * (image // 4) ** 2
    dense = [("fc1", flat, 512), ("fc2", 512, num_classes)]
    out = {name: 2 * side * side * 3 * 3 * cin * cout for name, cin, cout, side in convs}
    out.update({name: 2 * n_in * n_out for name, n_in, n_out in dense})
    return out


def mynet_flops(image: int = IMAGE, num_classes: int = NUM_CLASSES) -> tuple[int, int]:
    """(forward, train step) FLOPs per image; a train step is counted as 3x the forward
    (forward, gradient w.r.t. activations, gradient w.r.t. weights)."""
    fwd = sum(mynet_layer_flops(image, num_classes).values())
    return fwd, 3 * fwd


def config(quick: bool = False) -> dict:
    if quick:
        return {"steps_b64": 2, "steps_b256": 1, "infer_batches": 2, "epoch_images": 640,
                "bare_steps": 3, "warmup": 1, "reps": 2, "epoch_reps": 1}
    return {"steps_b64": 6, "steps_b256": 2, "infer_batches": 4, "epoch_images": 0,
            "bare_steps": 8, "warmup": 2, "reps": 5, "epoch_reps": 3}


def fixed_batch(batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same images (NHWC float32) and labels for both sides."""
    rng = np.random.default_rng([seed, batch])
    return (rng.standard_normal((batch, IMAGE, IMAGE, 3), np.float32),
            rng.integers(0, NUM_CLASSES, batch).astype(np.int32))


def mnist_train(cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    from jaxdl.data import sources  # numpy only; no JAX computation

    train = sources.mnist_5k_split().train
    images, labels = np.asarray(train.images), np.asarray(train.labels)
    if cfg.get("epoch_images"):
        images, labels = images[:cfg["epoch_images"]], labels[:cfg["epoch_images"]]
    return images, labels


# ------------------------------------------------------------------------------ jaxdl
class _Jax:
    def __init__(self, cfg: dict):
        import jax

        self.jax, self.cfg = jax, cfg

    def _task(self):
        """The `image_classifier` recipe's model, loss, optimizer and preprocess, as the
        runner builds them (on the embedded mnist_5k)."""
        from jaxdl import recipes

        recipe = recipes.get("image_classifier")
        config = recipe.get_config()
        config.dataset = "mnist_5k"
        self.recipe, self.config = recipe, config
        self.data = recipe.load_data(config)
        self.task = recipe.build(config, self.data)
        return self.task

    def _model_and_state(self):
        task = self._task()
        return task.model, task.init_state(0)

    def _train_step(self, model, preprocess=None):
        from jaxdl.train import make_train_step
        from jaxdl.train.compile import compile_step

        options = self.cfg.get("jax_train_options", "auto")
        return compile_step(make_train_step(self.task.loss_fn, model, preprocess=preprocess),
                            compiler_options=options)

    block = False  # wait on every step: fit does so on CPU with several devices (DESIGN)

    def _time_steps(self, step, batch, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            self.state, metrics = step(self.state, batch)
            if self.block:
                self.jax.block_until_ready(self.state)
        self.jax.block_until_ready((self.state, metrics))
        return time.perf_counter() - t


def _train_steps(cfg: dict, batch: int) -> int:
    """Timed steps per repetition: the batch-64 count for small batches, else batch 256's."""
    return cfg["steps_b64"] if batch <= 64 else cfg["steps_b256"]


class JaxTrain(_Jax):
    def __init__(self, cfg: dict, batch: int):
        super().__init__(cfg)
        self.batch_size, self.steps = batch, _train_steps(cfg, batch)

    def _mesh(self):
        return None  # one device

    def setup(self) -> dict:
        from jaxdl.train import make_train_step, parallel

        model, state = self._model_and_state()
        mesh = self._mesh()
        self.state, self.step, fit_kw = parallel.place_training(  # as the runner does
            state, make_train_step(self.task.loss_fn, model), mesh,
            compiler_options=self.cfg.get("jax_train_options", "auto"))
        self.block = fit_kw.get("block_every_step", False)  # fit's CPU multi-device wait
        x, y = fixed_batch(self.batch_size)
        self.batch = fit_kw.get("put_batch", self.jax.device_put)({"image": x, "label": y})
        first = self._time_steps(self.step, self.batch, 1)  # compiles
        for _ in range(self.cfg["warmup"]):
            steady = self._time_steps(self.step, self.batch, 1)
        return {"first_step_s": first, "steady_step_s": steady, "compile_s": first - steady,
                "devices": 1 if mesh is None else mesh.devices.size}

    def run(self) -> dict:
        s = self._time_steps(self.step, self.batch, self.steps)
        return {"seconds": s, "items": self.steps * self.batch_size}


class JaxTrainDataParallel(JaxTrain):
    """The same step data-parallel over one XLA:CPU device per core (`jaxdl.train.parallel`,
    as `--config.devices=0` trains): the batch split across the devices."""

    def _mesh(self):
        from jaxdl.train import make_mesh

        return make_mesh()


class JaxInfer(_Jax):
    def __init__(self, cfg: dict, batch: int = 256):
        super().__init__(cfg)
        self.batch_size, self.n = batch, cfg["infer_batches"]

    def setup(self) -> dict:
        import jax.numpy as jnp

        from jaxdl.evaluators.classification import make_logits_fn

        model, self.state = self._model_and_state()
        self.logits_fn = make_logits_fn(model)  # what the recipe's evaluation runs
        x, _ = fixed_batch(self.batch_size)
        self.batch = {"image": jnp.asarray(x)}
        t = time.perf_counter()
        self.jax.block_until_ready(self.logits_fn(self.state, self.batch))
        first = time.perf_counter() - t
        for _ in range(self.cfg["warmup"]):
            self.jax.block_until_ready(self.logits_fn(self.state, self.batch))
        return {"first_step_s": first}

    def run(self) -> dict:
        t = time.perf_counter()
        for _ in range(self.n):
            out = self.logits_fn(self.state, self.batch)
        self.jax.block_until_ready(out)
        return {"seconds": time.perf_counter() - t, "items": self.n * self.batch_size}


class JaxEpoch(_Jax):
    """`fit` over mnist_5k with the reference augmentation inside the step, then bare steps."""

    def setup(self) -> dict:
        import jax.numpy as jnp

        from jaxdl.data.loader import ArrayLoader

        model, self.state = self._model_and_state()
        images, labels = mnist_train(self.cfg)
        self.n_images = len(labels)
        self.loader = ArrayLoader({"image": images, "label": labels}, 64, seed=0)
        self.step = self._train_step(model, self.task.preprocess)  # the recipe's augmentation
        self.bare = self._train_step(model)
        x, y = fixed_batch(64)
        self.bare_batch = {"image": jnp.asarray(x), "label": jnp.asarray(y)}
        first = self._time_steps(self.step, next(iter(self.loader.epoch(0))), 1)
        self._time_steps(self.bare, self.bare_batch, 1)
        self._fit(1)  # warm-up: fit's first call also sets up orbax
        return {"first_step_s": first, "batches": self.loader.batches_per_epoch}

    def _fit(self, steps: int) -> float:
        import jax.numpy as jnp

        from jaxdl.train.loop import fit

        # Start at an epoch boundary (the warm-up and bare steps move the step counter), so
        # a run is one whole epoch with fit's one end-of-epoch checkpoint; a fresh workdir
        # each time, so fit neither resumes nor keeps checkpoints around.
        per_epoch = self.loader.batches_per_epoch
        start = -(-int(self.state.step) // per_epoch) * per_epoch
        self.state = self.state.replace(step=jnp.asarray(start, jnp.int32))
        workdir = tempfile.mkdtemp(prefix="jaxdl-bench-")
        try:
            t = time.perf_counter()
            self.state, _ = fit(self.state, self.step, self.loader, workdir=workdir,
                                num_steps=start + steps, verbose=False)
            return time.perf_counter() - t
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def run(self) -> dict:
        seconds = self._fit(self.loader.batches_per_epoch)
        n = self.cfg["bare_steps"]
        bare = self._time_steps(self.bare, self.bare_batch, n)
        return {"seconds": seconds, "items": self.n_images, "bare_seconds": bare,
                "bare_items": n * 64}


class JaxMatmul(_Jax):
    def setup(self) -> dict:
        import jax.numpy as jnp

        rng = np.random.default_rng(0)
        self.a = jnp.asarray(rng.standard_normal((MATMUL_N, MATMUL_N), np.float32))
        self.b = jnp.asarray(rng.standard_normal((MATMUL_N, MATMUL_N), np.float32))
        self.f = self.jax.jit(jnp.dot)
        self.f(self.a, self.b).block_until_ready()
        return {}

    def run(self) -> dict:
        t = time.perf_counter()
        for _ in range(3):
            out = self.f(self.a, self.b)
        out.block_until_ready()
        return {"seconds": time.perf_counter() - t, "items": 3 * 2 * MATMUL_N ** 3}


# ------------------------------------------------------------------------------ torch
class _Torch:
    def __init__(self, cfg: dict):
        import torch

        from benchmarks import torch_peers

        self.torch, self.peers, self.cfg = torch, torch_peers, cfg
        torch.manual_seed(0)

    def _model(self):
        return self.peers.MyNetPeer(NUM_CLASSES)

    def _tensors(self, batch: int):
        x, y = fixed_batch(batch)
        return (self.torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                self.torch.from_numpy(y.astype(np.int64)))

    def _time_steps(self, step, x, y, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            step(x, y)
        return time.perf_counter() - t


class TorchTrain(_Torch):
    def __init__(self, cfg: dict, batch: int):
        super().__init__(cfg)
        self.batch_size, self.steps = batch, _train_steps(cfg, batch)

    def setup(self) -> dict:
        model = self._model()
        model.train()
        self.step = self.peers.make_cnn_trainer(model)
        self.x, self.y = self._tensors(self.batch_size)
        first = self._time_steps(self.step, self.x, self.y, 1)
        for _ in range(self.cfg["warmup"]):
            steady = self._time_steps(self.step, self.x, self.y, 1)
        return {"first_step_s": first, "steady_step_s": steady,
                "threads": self.torch.get_num_threads()}

    def run(self) -> dict:
        s = self._time_steps(self.step, self.x, self.y, self.steps)
        return {"seconds": s, "items": self.steps * self.batch_size}


class TorchInfer(_Torch):
    def __init__(self, cfg: dict, batch: int = 256):
        super().__init__(cfg)
        self.batch_size, self.n = batch, cfg["infer_batches"]

    def _forward(self):
        with self.torch.no_grad():  # the reference's evaluation
            return self.model(self.x)

    def setup(self) -> dict:
        self.model = self._model()
        self.model.eval()
        self.x, _ = self._tensors(self.batch_size)
        t = time.perf_counter()
        self._forward()
        first = time.perf_counter() - t
        for _ in range(self.cfg["warmup"]):
            self._forward()
        return {"first_step_s": first}

    def run(self) -> dict:
        t = time.perf_counter()
        for _ in range(self.n):
            self._forward()
        return {"seconds": time.perf_counter() - t, "items": self.n * self.batch_size}


class TorchEpoch(_Torch):
    """The reference's loop over a DataLoader with its CPU transforms, then bare steps."""

    def setup(self) -> dict:
        from torch.utils.data import DataLoader

        images, labels = mnist_train(self.cfg)
        self.n_images = len(labels)
        self.model = self._model()
        self.step = self.peers.make_cnn_trainer(self.model)
        self.loader = DataLoader(self.peers.MnistDataset(images, labels), batch_size=64,
                                 shuffle=True)
        self.x, self.y = self._tensors(64)
        self.model.train()
        first = self._time_steps(self.step, self.x, self.y, 1)
        return {"first_step_s": first, "batches": len(self.loader)}

    def run(self) -> dict:
        t = time.perf_counter()
        self.model.train()
        running_loss, correct, total = 0.0, 0, 0
        for xb, yb in self.loader:
            loss_sum, right = self.step(xb, yb)
            running_loss += loss_sum
            correct += right
            total += yb.size(0)
        seconds = time.perf_counter() - t
        n = self.cfg["bare_steps"]
        bare = self._time_steps(self.step, self.x, self.y, n)
        return {"seconds": seconds, "items": total, "bare_seconds": bare, "bare_items": n * 64}


class TorchMatmul(_Torch):
    def setup(self) -> dict:
        g = self.torch.Generator().manual_seed(0)
        self.a = self.torch.randn(MATMUL_N, MATMUL_N, generator=g)
        self.b = self.torch.randn(MATMUL_N, MATMUL_N, generator=g)
        self.a @ self.b
        return {}

    def run(self) -> dict:
        t = time.perf_counter()
        for _ in range(3):
            self.a @ self.b
        return {"seconds": time.perf_counter() - t, "items": 3 * 2 * MATMUL_N ** 3}


CASES = {
    "matmul_peak": (JaxMatmul, TorchMatmul),
    "train_b64": (lambda c: JaxTrain(c, 64), lambda c: TorchTrain(c, 64)),
    "train_b64_dp": (lambda c: JaxTrainDataParallel(c, 64), lambda c: TorchTrain(c, 64)),
    "train_b256": (lambda c: JaxTrain(c, 256), lambda c: TorchTrain(c, 256)),
    "infer_b256": (lambda c: JaxInfer(c, 256), lambda c: TorchInfer(c, 256)),
    "epoch": (JaxEpoch, TorchEpoch),
}


def run(quick: bool = False, say=print, log=None, extra_cfg: dict | None = None) -> dict:
    """Run every CNN case; returns the figures (see `benchmarks.run` for the table)."""
    from benchmarks.harness import Pair

    cfg = {**config(quick), **(extra_cfg or {})}
    reps, out = cfg["reps"], {}
    say(f"CNN benchmarks ({'quick' if quick else 'full'}): {os.cpu_count()} CPUs")
    pair = Pair("benchmarks.bench_cnn", cfg, log)
    try:
        res = {}
        res["matmul_peak"] = pair.run_case("matmul_peak", reps, say=say)
        for name in ("train_b64", "train_b64_dp", "train_b256", "infer_b256"):
            res[name] = pair.run_case(name, reps, say=say)
        res["epoch"] = pair.run_case("epoch", cfg["epoch_reps"], say=say)
    finally:
        closing = pair.close()
    fwd, train = mynet_flops()
    peak = {s: max(res["matmul_peak"].rates(s)) for s in ("jaxdl", "torch")}
    out["matmul_peak_gflops"] = {s: v / 1e9 for s, v in peak.items()}
    out["mynet_mflop_forward"] = fwd / 1e6
    out["mynet_mflop_train"] = train / 1e6
    for name in ("train_b64", "train_b64_dp", "train_b256", "infer_b256", "epoch"):
        r = res[name]
        out[name] = {"jaxdl": r.median("jaxdl"), "torch": r.median("torch"), "ratio": r.ratio(),
                     "setup": r.setup, "runs": r.runs}
    out["train_b64"]["peak_rss_mb"] = {
        s: res["train_b64"].runs[s][-1]["peak_rss_mb"] for s in ("jaxdl", "torch")}
    for side in ("jaxdl", "torch"):
        e = res["epoch"].runs[side]
        ratios = [(x["items"] / x["seconds"]) / (x["bare_items"] / x["bare_seconds"]) for x in e]
        out["epoch"][f"{side}_vs_step"] = float(np.median(ratios))
        out["epoch"][f"{side}_bare"] = float(np.median(
            [x["bare_items"] / x["bare_seconds"] for x in e]))
    out["peak_fraction_train_b64"] = {
        s: out["train_b64"][s] * train / peak[s] for s in ("jaxdl", "torch")}
    out["peak_rss_mb"] = {s: closing[s]["peak_rss_mb"] for s in ("jaxdl", "torch")}
    out["cfg"] = cfg
    return out


if __name__ == "__main__":
    from benchmarks import harness

    harness.main(run, __doc__)
