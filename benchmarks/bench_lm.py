"""jaxdl's decoder LM vs a nanoGPT-style PyTorch GPT of the same shape, on this CPU.

    python -m benchmarks.bench_lm [--quick]

The jaxdl side is the `decoder_lm` recipe's nanoGPT config, built by the recipe itself
(`configs/nanogpt_shakespeare_char.py`, nanoGPT's CPU `shakespeare_char` run):
4 layers, 4 heads, 128 wide, context 64, batch 12, no biases, tied embeddings, AdamW with
warmup + cosine, weight decay on matrices, gradient clipping 1.0. Same character windows
of tiny shakespeare on both sides.

Cases (each side in its own process, interleaved A B A B after warm-up):
  train             train steps (tokens/s = batch x context per step)
  generate          sampling 300 characters after "ROMEO:" (temperature 0.8, batch 1):
                    jaxdl's `generate_cached` vs the peer's KV-cached generation with the
                    same sliding window (both refill the cache from the newest half)
  generate_nocache  (peer only) nanoGPT's own `generate`: no cache, the cropped window is
                    recomputed for every token
"""

from __future__ import annotations

import time

import numpy as np

LAYERS, HEADS, DIM, CONTEXT, BATCH = 4, 4, 128, 64, 12
PROMPT, GEN_TOKENS, TEMPERATURE = "ROMEO:", 300, 0.8
TOTAL_STEPS, WARMUP_STEPS = 2000, 100


def config(quick: bool = False) -> dict:
    if quick:
        return {"train_steps": 10, "gen_tokens": 60, "warmup": 2, "reps": 2}
    return {"train_steps": 40, "gen_tokens": GEN_TOKENS, "warmup": 5, "reps": 5}


def data(num_batches: int = 8):
    """(vocabulary size, prompt ids, token windows (num_batches, BATCH, CONTEXT + 1)): the
    recipe's data and loader (numpy only; no JAX computation)."""
    recipe, config = _recipe()
    text = recipe.load_data(config)
    config.batches_per_epoch = num_batches
    loader = recipe.train_loader(config, text)
    windows = np.stack([b["tokens"] for b in loader.epoch(0)]).astype(np.int32)
    return len(text.vocab), np.asarray(text.vocab.encode(PROMPT), np.int32), windows


def _recipe():
    from jaxdl import recipes

    recipe = recipes.get("decoder_lm")
    config = recipe.nanogpt_config()
    assert (config.num_layers, config.num_heads, config.dim, config.seq_len,
            config.batch_size) == (LAYERS, HEADS, DIM, CONTEXT, BATCH), "the peer's shape"
    return recipe, config


# ------------------------------------------------------------------------------ jaxdl
class _Jax:
    def __init__(self, cfg: dict):
        import jax

        self.jax, self.cfg = jax, cfg

    def _model_and_state(self):
        """The recipe's model and initial state, as the runner builds them."""
        recipe, config = _recipe()
        self.vocab, self.prompt, self.windows = data()
        task = recipe.build(config, recipe.load_data(config))
        return task.model, task.init_state(config.seed)


class JaxTrain(_Jax):
    def _mesh(self):
        return None  # one device

    def setup(self) -> dict:
        from jaxdl.nn import count_params
        from jaxdl.tasks import language
        from jaxdl.train import make_train_step, parallel

        model, state = self._model_and_state()
        mesh = self._mesh()
        self.state, self.step, fit_kw = parallel.place_training(  # as the experiments do
            state, make_train_step(language.next_token_loss, model), mesh,
            compiler_options=self.cfg.get("jax_lm_options", "auto"))
        put = fit_kw.get("put_batch", self.jax.device_put)  # on device once, not per step
        self.block = fit_kw.get("block_every_step", False)  # fit's CPU multi-device wait
        self.batches = [put({"tokens": np.asarray(w)}) for w in self.windows]
        self.i = 0
        first = self._steps(1)
        for _ in range(self.cfg["warmup"]):
            steady = self._steps(1)
        return {"first_step_s": first, "steady_step_s": steady, "compile_s": first - steady,
                "params": count_params(self.state.params),
                "devices": 1 if mesh is None else mesh.devices.size}

    def _steps(self, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            self.state, metrics = self.step(self.state, self.batches[self.i % len(self.batches)])
            if self.block:
                self.jax.block_until_ready(self.state)
            self.i += 1
        self.jax.block_until_ready((self.state, metrics))
        return time.perf_counter() - t

    def run(self) -> dict:
        n = self.cfg["train_steps"]
        return {"seconds": self._steps(n), "items": n * BATCH * CONTEXT}


class JaxTrainDataParallel(JaxTrain):
    """The same step data-parallel over one XLA:CPU device per core (`jaxdl.train.parallel`,
    as `--config.devices=0` trains): the batch of 12 split across the devices."""

    def _mesh(self):
        from jaxdl.train import make_mesh

        return make_mesh()


class JaxGenerate(_Jax):
    def setup(self) -> dict:
        model, state = self._model_and_state()
        self.model, self.params = model, state.params
        self.key = self.jax.random.PRNGKey(1)
        t = time.perf_counter()
        self._generate()  # compiles the prefill and the decode scans
        return {"first_step_s": time.perf_counter() - t}

    def _generate(self):
        from jaxdl.tasks import language

        self.key, key = self.jax.random.split(self.key)
        return np.asarray(language.generate_cached(self.model, self.params, self.prompt,
                                                   self.cfg["gen_tokens"], key,
                                                   temperature=TEMPERATURE))

    def run(self) -> dict:
        t = time.perf_counter()
        self._generate()
        return {"seconds": time.perf_counter() - t, "items": self.cfg["gen_tokens"]}


# ------------------------------------------------------------------------------ torch
class _Torch:
    def __init__(self, cfg: dict):
        import torch

        from benchmarks import torch_peers

        self.torch, self.peers, self.cfg = torch, torch_peers, cfg
        torch.manual_seed(0)
        self.vocab, self.prompt, self.windows = data()
        self.model = torch_peers.GPTPeer(self.vocab, LAYERS, HEADS, DIM, CONTEXT, bias=False)


class TorchTrain(_Torch):
    def setup(self) -> dict:
        self.model.train()
        self.step = self.peers.make_gpt_trainer(self.model, total=TOTAL_STEPS,
                                                warmup=WARMUP_STEPS)
        w = self.torch.from_numpy(self.windows.astype(np.int64))
        self.batches = [(b[:, :-1].contiguous(), b[:, 1:].contiguous()) for b in w]
        self.i = 0
        first = self._steps(1)
        for _ in range(self.cfg["warmup"]):
            steady = self._steps(1)
        return {"first_step_s": first, "steady_step_s": steady,
                "params": sum(p.numel() for p in self.model.parameters()),
                "threads": self.torch.get_num_threads()}

    def _steps(self, n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            self.step(*self.batches[self.i % len(self.batches)])
            self.i += 1
        return time.perf_counter() - t

    def run(self) -> dict:
        n = self.cfg["train_steps"]
        return {"seconds": self._steps(n), "items": n * BATCH * CONTEXT}


class TorchGenerate(_Torch):
    cached = True

    def setup(self) -> dict:
        self.model.eval()
        self.idx = self.torch.from_numpy(self.prompt.astype(np.int64))[None]
        t = time.perf_counter()
        self._generate()
        return {"first_step_s": time.perf_counter() - t}

    def _generate(self):
        return self.model.generate(self.idx, self.cfg["gen_tokens"], TEMPERATURE,
                                   cached=self.cached)

    def run(self) -> dict:
        t = time.perf_counter()
        self._generate()
        return {"seconds": time.perf_counter() - t, "items": self.cfg["gen_tokens"]}


class TorchGenerateNoCache(TorchGenerate):
    cached = False


CASES = {
    "train": (JaxTrain, TorchTrain),
    "train_dp": (JaxTrainDataParallel, TorchTrain),
    "generate": (JaxGenerate, TorchGenerate),
    "generate_nocache": (None, TorchGenerateNoCache),
}


def run(quick: bool = False, say=print, log=None, extra_cfg: dict | None = None) -> dict:
    """Run every LM case; returns the figures (see `benchmarks.run` for the table)."""
    from benchmarks.harness import Pair

    cfg = {**config(quick), **(extra_cfg or {})}
    say(f"decoder LM benchmarks ({'quick' if quick else 'full'})")
    pair = Pair("benchmarks.bench_lm", cfg, log)
    try:
        res = {name: pair.run_case(name, cfg["reps"], say=say) for name in CASES}
    finally:
        closing = pair.close()
    out = {}
    for name in ("train", "train_dp", "generate"):
        r = res[name]
        out[name] = {"jaxdl": r.median("jaxdl"), "torch": r.median("torch"), "ratio": r.ratio(),
                     "setup": r.setup, "runs": r.runs}
    out["generate_nocache"] = {"torch": res["generate_nocache"].median("torch")}
    out["peak_rss_mb"] = {s: closing[s]["peak_rss_mb"] for s in ("jaxdl", "torch")}
    out["cfg"] = cfg
    return out


if __name__ == "__main__":
    from benchmarks import harness

    harness.main(run, __doc__)
