"""jaxdl's transformer_lm recipe replayed on a real nanoGPT run: same initial weights,
same batches, and both sides' checkpoints evaluated on the full validation split.

    python -m benchmarks.nanogpt_replay NANOGPT_OUT_DIR

Where the golden test (tests/test_transformer.py) checks a few tiny steps against a
transcription of nanoGPT, this takes the output of nanoGPT's own train.py at full size,
run with the documented CPU command plus `--always_save_checkpoint=True`, and three
added lines that record what the run drew from torch's RNG:

    torch.save(model.state_dict(), os.path.join(out_dir, 'init.pt'))   # after model.to(device)
    TRAIN_IX.append(ix.numpy())       # in get_batch, for split == 'train' outside estimate_loss
    np.save(os.path.join(out_dir, 'train_ix.npy'), np.stack(TRAIN_IX))  # after the loop

and each eval's checkpoint saved as `ckpt_{iter_num}.pt` instead of `ckpt.pt`. The script
converts every `ckpt_*.pt` with `decoder_lm_params_from_nanogpt` and evaluates it with
jaxdl's full-split evaluator, then trains jaxdl from `init.pt` on the recorded batches
through the shared train step and evaluates at the same steps. Needs torch (to read the
.pt files). Result of 2026-12-01 in docs/transformers.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("nanogpt_dir", type=Path)
    args = parser.parse_args(argv)

    import jax.numpy as jnp
    import torch

    from jaxdl import recipes
    from jaxdl.nn import decoder_lm_params_from_nanogpt
    from jaxdl.tasks import language
    from jaxdl.train import make_train_step
    from jaxdl.train.compile import compile_step

    recipe = recipes.get("decoder_lm")
    config = recipe.nanogpt_config()
    data = recipe.load_data(config)
    train_ids = data.train_ids
    task = recipe.build(config, data)
    template = task.init_state(config.seed)
    ctx = recipes.Context(verbose=False)

    def val_loss(params) -> float:
        return recipe.val_metrics(config, task, data, template.replace(params=params), ctx)["loss"]

    def load(path: Path) -> dict:
        return torch.load(path, map_location="cpu", weights_only=False)

    def params_of(state_dict) -> dict:
        return decoder_lm_params_from_nanogpt(
            {k: v.numpy() for k, v in state_dict.items()}, config.num_heads)

    nanogpt = {}
    for path in args.nanogpt_dir.glob("ckpt_*.pt"):
        ckpt = load(path)
        nanogpt[int(ckpt["iter_num"])] = (val_loss(params_of(ckpt["model"])),
                                         float(ckpt["best_val_loss"]))
    starts = np.load(args.nanogpt_dir / "train_ix.npy")[:config.num_steps]
    params = params_of(load(args.nanogpt_dir / "init.pt"))
    state = template.replace(params=params, opt_state=task.tx.init(params))
    step = compile_step(make_train_step(language.next_token_loss, task.model))
    offsets = np.arange(config.seq_len + 1)
    print("step | nanoGPT: its 20-batch estimate, full val split | jaxdl replay: full val split")
    t0 = time.perf_counter()
    for i, batch_starts in enumerate(starts, start=1):
        batch = {"tokens": jnp.asarray(train_ids[batch_starts[:, None] + offsets]),
                 "mask": jnp.ones(len(batch_starts))}
        state, _ = step(state, batch)
        if i in nanogpt:
            (theirs, estimate), ours = nanogpt[i], val_loss(state.params)
            print(f"{i:5d} | {estimate:.4f}  {theirs:.4f} | {ours:.4f}  "
                  f"(diff {ours - theirs:+.5f}, {time.perf_counter() - t0:.0f} s)", flush=True)
    if not nanogpt:
        print(f"no ckpt_*.pt in {args.nanogpt_dir}; jaxdl after {len(starts)} steps: "
              f"{val_loss(state.params):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
