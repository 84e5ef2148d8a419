"""Child of tests/test_recipes_parallel.py: every recipe's tiny run through the runner on one
device and data-parallel on 4 fake CPU devices (the device count must be fixed before JAX
starts, hence a process of its own). Prints one JSON line: per recipe and device count, the
per-step training losses and the final evaluation's scalars."""

import json
import sys
from pathlib import Path

from jaxdl import recipes, run
from jaxdl.config import apply_overrides
from jaxdl.train.writer import read_rows

TINY = {
    "mlp": {"problem": "digits", "epochs": 1, "batch_size": 256},
    "image_classifier": {"dataset": "synthetic", "epochs": 1, "batch_size": 32,
                         "eval_batch_size": 64},
    "rnn_lm": {"cell": "gru", "embed_dim": 16, "hidden_dim": 32, "seq_len": 16,
               "batch_size": 8, "num_steps": 4, "batches_per_epoch": 4, "val_windows": 16,
               "eval_batch_size": 16, "sample_tokens": 5},
    "decoder_lm": {"num_layers": 1, "dim": 32, "num_heads": 2, "seq_len": 16, "batch_size": 8,
                   "num_steps": 4, "batches_per_epoch": 4, "warmup_steps": 1,
                   "val_windows": 16, "eval_batch_size": 16, "sample_tokens": 5},
    "seq2seq": {"num_train": 256, "num_test": 32, "num_layers": 1, "dim": 16, "num_heads": 2,
                "batch_size": 16, "num_steps": 4, "batches_per_epoch": 4, "warmup_steps": 1,
                "eval_batch_size": 32, "beam_size": 2},
    "text2img": {"dataset": "mnist_5k", "image_size": 28, "channels": (8, 8),
                 "attention_levels": (), "cross_attention_levels": (1,), "num_heads": 2,
                 "groups": 4, "text_layers": 1, "text_dim": 16, "text_heads": 2,
                 "num_timesteps": 50, "batch_size": 16, "num_steps": 4, "eval_every": 4,
                 "checkpoint_every": 0, "warmup_steps": 1, "eval_steps": 2,
                 "grid_per_class": 2, "fid_samples": 20, "classifier_epochs": 1,
                 "test_loss_images": 32},
}


def tiny_config(name: str, devices: int):
    config = recipes.get(name).get_config()
    overrides = {**TINY[name], "devices": devices, "log_every": 1}
    return apply_overrides(config, {k: repr(v) if not isinstance(v, str) else v
                                    for k, v in overrides.items()})


def main(out_dir: str) -> None:
    report = {}
    for name in sys.argv[2].split(",") if len(sys.argv) > 2 else TINY:
        for devices in (1, 4):
            workdir = Path(out_dir) / f"{name}_{devices}"
            results = run.train(tiny_config(name, devices), workdir)
            losses = [r["train/loss"] for r in read_rows(workdir) if "train/loss" in r]
            scalars = {k: v for k, v in results.items() if isinstance(v, float)
                       and not k.endswith(("seconds", "per_second", "throughput", "per_step", "mfu",
                                            "mfu_6n", "peak_flops"))}
            report[f"{name}/{devices}"] = {"losses": losses, "eval": scalars,
                                           "num_devices": results["num_devices"]}
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
