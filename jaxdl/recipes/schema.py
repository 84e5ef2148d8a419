"""What values a config key may take: checked for the whole config before any work.

`RULES` covers the keys the recipes share (a recipe has a key or not; a rule applies where
it has one); a recipe adds its own in `Recipe.rules`. A violation is one UserError naming
the key, the value and the allowed range, e.g. `config key 'dropout' is 1.5; allowed:
numbers in [0.0, 1.0) (e.g. --config.dropout=0.1)`.
"""

import math
import numbers

from jaxdl.errors import UserError

MAX_SEED = 2**31 - 1
MAX_BATCH = 1 << 20


class Rule:
    """`low <= value <= high` (or `< high` with `open_high`) for numbers; ints only with
    `integer`; for a sequence, every element."""

    def __init__(self, low=None, high=None, *, integer=False, open_high=False,
                 sequence=False, example=None):
        self.low, self.high, self.integer = low, high, integer
        self.open_high, self.sequence, self.example = open_high, sequence, example

    def describe(self, key: str) -> str:
        kind = "integers" if self.integer else "numbers"
        if self.low is not None and self.high is not None:
            text = f"{kind} in [{self.low}, {self.high}{')' if self.open_high else ']'}"
        elif self.low is not None:
            text = f"{kind} >= {self.low}"
        else:
            text = f"{kind} <= {self.high}"
        return f"a non-empty tuple of {text}" if self.sequence else text

    def ok(self, value) -> bool:
        if self.sequence:
            return isinstance(value, tuple | list) and len(value) > 0 and all(
                self._ok_one(v) for v in value)
        return self._ok_one(value)

    def _ok_one(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and (value >= self.high if self.open_high
                                      else value > self.high):
            return False
        return True


class Choice:
    """One of a fixed set of strings."""

    def __init__(self, *choices):
        self.choices, self.example = choices, choices[0]

    def describe(self, key: str) -> str:
        return "one of " + ", ".join(self.choices)

    def ok(self, value) -> bool:
        return value in self.choices


def positive_int(high=10**9, example=None):
    return Rule(1, high, integer=True, example=example)


def count(high=10**9, example=None):  # zero allowed: "0 means off"
    return Rule(0, high, integer=True, example=example)


RULES = {
    "seed": Rule(0, MAX_SEED, integer=True, example=0),
    "batch_size": positive_int(MAX_BATCH, 64),
    "eval_batch_size": positive_int(MAX_BATCH, 256),
    "epochs": positive_int(10**6, 5),
    "num_steps": positive_int(10**9, 1000),
    "batches_per_epoch": positive_int(10**9, 100),
    "devices": count(1 << 16, 1),
    "log_every": count(example=50),
    "grad_accum_steps": positive_int(1 << 16, 1),
    "checkpoint_every": count(example=250),
    "data_threads": count(256, example=1),
    "data_workers": count(256, example=2),
    "eval_every": count(example=250),
    "learning_rate": Rule(1e-12, 10.0, example=1e-3),
    "min_learning_rate": Rule(0.0, 10.0, example=1e-4),
    "weight_decay": Rule(0.0, 10.0, example=1e-4),
    "dropout": Rule(0.0, 1.0, open_high=True, example=0.1),
    "attention_dropout": Rule(0.0, 1.0, open_high=True, example=0.0),
    "grad_clip_norm": Rule(0.0, example=1.0),
    "grad_clip": Rule(0.0, example=1.0),
    "warmup_steps": count(example=100),
    "beta2": Rule(0.0, 1.0, open_high=True, example=0.99),
    "val_fraction": Rule(0.0, 1.0, open_high=True, example=0.1),
    "test_fraction": Rule(0.01, 0.99, example=0.2),
    "val_windows": count(example=0),
    "sample_tokens": positive_int(100_000, 300),
    "temperature": Rule(0.0, 100.0, example=0.8),
    "top_k": count(1 << 20, 0),
    "hidden_sizes": Rule(1, 1 << 16, integer=True, sequence=True, example=(64, 64)),
    "seq_len": positive_int(1 << 16, 64),
    "image_size": positive_int(4096, 48),
    "num_layers": positive_int(1024, 2),
    "num_heads": positive_int(1024, 4),
    "dim": positive_int(1 << 16, 128),
    "embed_dim": positive_int(1 << 16, 64),
    "hidden_dim": count(1 << 16, 0),
    "param_budget": positive_int(10**10, 350_000),
    "rotation_degrees": Rule(0.0, 180.0, example=10.0),
    "jitter": Rule(0.0, 1.0, example=0.2),
    "num_train": positive_int(10**7, 20_000),
    "num_test": positive_int(10**7, 2_000),
    "src_len": positive_int(4096, 32),
    "beam_size": positive_int(64, 3),
    "max_prompt_len": positive_int(4096, 64),
    "prompt_shift": Rule(0.0, 1.0, example=0.5),
    "cond_drop": Rule(0.0, 1.0, open_high=True, example=0.1),
    "num_timesteps": positive_int(10**6, 1000),
    "ema_decay": Rule(0.0, 1.0, open_high=True, example=0.995),
    "guidance": Rule(0.0, 100.0, example=5.0),
    "eval_steps": positive_int(10**6, 25),
    "eval_eta": Rule(0.0, 1.0, example=0.0),
    "grid_per_class": positive_int(1000, 10),
    "fid_samples": positive_int(10**7, 10_000),
    "classifier_epochs": positive_int(1000, 3),
    "test_loss_images": count(10**7, 2000),
    "min_lr_fraction": Rule(0.0, 1.0, example=0.1),
    "remat": Choice("none", "block", "full"),
    "dtype": Choice("float32", "bfloat16"),
    "opt_state_dtype": Choice("float32", "bfloat16"),
    "attention_impl": Choice("auto", "xla", "cudnn"),
    "loss_impl": Choice("auto", "plain", "chunked"),
}


def validate(config, rules: dict) -> None:
    """The first key (in the config's order) whose value breaks its rule: a UserError."""
    for key, value in config.items():
        rule = rules.get(key)
        if rule is None or rule.ok(value):
            continue
        example = f" (e.g. --config.{key}={rule.example!r})" if rule.example is not None else ""
        raise UserError(f"config key {key!r} is {value!r}; allowed: {rule.describe(key)}"
                        f"{example}")
