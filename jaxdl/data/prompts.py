"""Prompts for text-to-image: class names in natural sentences, training vs held-out templates.

Each class has one noun phrase ("an ankle boot", "a pair of trousers"; for digits the word
and the numeral); each template turns it into a sentence. The `train` templates (every
prefix with every suffix, 36 for Fashion-MNIST, 40 for digits) are the only ones the model
sees; the 4 `held_out` ones are used only at evaluation, so the prompt accuracy measures
whether the text encoder generalises to new wording. In training, prompts are also moved
to random positions (`shift_prompts`), so that a class name is not tied to where it stood.

Tokens: `PromptTokenizer` maps a prompt to (max_len,) int32 ids `[BOS, tokens..., PAD...]`
with PAD = 0 and BOS = 1 (so even the empty prompt, which means "unconditional", has one
real token to attend to). Prompts are lower-cased and their spaces collapsed. `char`
level: a fixed alphabet (lower-case letters, digits, space and `-',.`); an unknown
character is an error. `word` level: the words of the training templates
(`jaxdl.data.vocab.Vocab.words`); an unknown word becomes `<unk>`. Both are rebuilt from the
prompt set's name and the level alone, so `jaxdl sample` needs nothing but the config.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.data.vocab import PAD_ID, Vocab
from jaxdl.errors import UserError

OFFSET = 2  # ids 0, 1 are PAD and BOS: the first prompt token's id
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 -',."

FASHION_NOUNS = ("a t-shirt", "a pair of trousers", "a pullover", "a dress", "a coat",
                 "a sandal", "a shirt", "a sneaker", "a bag", "an ankle boot")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# {a}: the noun with its article; {n}: without it. Digits: {w} word, {d} numeral.
# Training templates are every prefix with every suffix; the held-out ones share neither.
TEMPLATES = {
    "fashion": {
        "prefixes": ("{a}", "a photo of {a}", "a picture of {a}", "an image of {a}",
                     "a grayscale photo of {a}", "a product photo of {a}", "a small image of {a}",
                     "a photo of a single {n}", "{n}"),
        "suffixes": ("", " on a plain background", ", centered", " for sale"),
        "held_out": ("a low resolution photo of {a}", "a photograph showing {a}",
                     "{a} in black and white", "here is {a}"),
    },
    "digits": {
        "prefixes": ("a handwritten digit {w}", "the digit {d}", "a handwritten {d}",
                     "the number {w}", "{d}", "{w}", "a photo of the number {d}",
                     "an image of a {w}", "digit {w}", "a scanned digit {d}"),
        "suffixes": ("", " on a plain background", ", centered", " in white ink"),
        "held_out": ("the number {d} written by hand", "a digit {w} written with a pen",
                     "handwritten number {w}", "here is a {d}"),
    },
}


def templates(prompt_set: str, split: str = "train") -> tuple[str, ...]:
    if prompt_set not in TEMPLATES:
        raise UserError(f"unknown prompt set {prompt_set!r}; choose one of {', '.join(TEMPLATES)}")
    t = TEMPLATES[prompt_set]
    if split == "train":
        return tuple(p + s for p in t["prefixes"] for s in t["suffixes"])
    if split == "held_out":
        return t["held_out"]
    raise UserError(f"unknown template split {split!r}; choose train or held_out")


def prompt_set_for(dataset: str) -> str:
    """`fashion` for Fashion-MNIST, `digits` for the MNIST family (and synthetic)."""
    return "fashion" if "fashion" in str(dataset).lower() else "digits"


def class_phrases(prompt_set: str, num_classes: int = 10) -> list[dict]:
    if prompt_set not in TEMPLATES:
        raise UserError(f"unknown prompt set {prompt_set!r}; choose one of {', '.join(TEMPLATES)}")
    if num_classes != 10:
        raise UserError(f"prompts are written for 10 classes, the dataset has {num_classes}; "
                        "use fashion_mnist, mnist or mnist_5k")
    if prompt_set == "fashion":
        return [{"a": a, "n": a.split(" ", 1)[1]} for a in FASHION_NOUNS]
    return [{"w": w, "d": str(d)} for d, w in enumerate(DIGIT_WORDS)]


def prompts(prompt_set: str, split: str = "train") -> list[list[str]]:
    """prompts[c][k]: class c in template k of the `train` or `held_out` templates."""
    return [[tpl.format(**p) for tpl in templates(prompt_set, split)]
            for p in class_phrases(prompt_set)]


def normalize(text: str) -> str:
    return " ".join(str(text).lower().split())


class PromptTokenizer:
    """Prompt text <-> (max_len,) ids `[BOS, ...tokens, PAD...]`; see the module docstring."""

    def __init__(self, prompt_set: str, level: str = "char", max_len: int = 64):
        if level == "char":
            self.vocab = Vocab(ALPHABET, level="char", specials=OFFSET)
        elif level == "word":
            train = prompts(prompt_set, "train")
            self.vocab = Vocab.words(" ".join(p for row in train for p in row), specials=OFFSET)
        else:
            raise UserError(f"unknown text level {level!r}; choose char or word "
                            "(--config.text_level)")
        self.prompt_set, self.level, self.max_len = prompt_set, level, max_len

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise UserError(f"a prompt must be a string, got {type(text).__name__}")
        clean = normalize(text)
        if self.level == "char":
            bad = sorted(set(clean) - set(ALPHABET))
            if bad:
                raise UserError(f"prompt {text!r} has characters {''.join(bad)!r} that the "
                                "character vocabulary lacks; use only letters, digits, spaces "
                                f"and {ALPHABET[-4:]!r} (e.g. \"an ankle boot\")")
        n = len(self.vocab.split(clean))
        if n + 1 > self.max_len:
            raise UserError(f"prompt {text!r} has {n} {self.level} tokens; the model "
                            f"reads at most {self.max_len - 1}; shorten the prompt")
        return self.vocab.encode(clean, self.max_len, bos=True)

    def encode_batch(self, texts) -> np.ndarray:
        return np.stack([self.encode(t) for t in texts]) if len(texts) else np.zeros(
            (0, self.max_len), np.int32)

    def decode(self, ids) -> str:
        return self.vocab.decode(ids)

    @property
    def empty(self) -> np.ndarray:
        """The empty prompt: what classifier-free guidance drops a prompt to."""
        return self.encode("")

    def table(self, split: str = "train") -> np.ndarray:
        """(num_classes, num_templates, max_len) ids of every class in every template."""
        return np.stack([self.encode_batch(row) for row in prompts(self.prompt_set, split)])


def shift_prompts(tokens, rng):
    """Move each prompt (not its BOS) right by a random number of padding positions, so the
    encoder sees words at every position (absolute positions are otherwise a shortcut:
    a held-out template puts the class name where training never had it)."""
    length = tokens.shape[1]
    n = jnp.sum(tokens[:, 1:] != PAD_ID, axis=1)  # prompt tokens after BOS
    shift = jnp.floor(jax.random.uniform(rng, n.shape) * (length - n)).astype(jnp.int32)
    src = jnp.arange(length)[None, :] - shift[:, None]
    moved = jnp.take_along_axis(tokens, jnp.clip(src, 0, length - 1), axis=1)
    moved = jnp.where(src >= 1, moved, PAD_ID)
    return moved.at[:, 0].set(tokens[:, 0])


def make_prompt_preprocess(table: np.ndarray, image_fn, shift_prob: float = 0.0):
    """`preprocess(batch, rng, train)` for the train step: images through `image_fn`, and a
    prompt `table[label, k]` with k drawn uniformly per example from the step's rng; when
    training, with probability `shift_prob` the prompt is shifted (`shift_prompts`)."""
    table = jnp.asarray(table)

    def preprocess(batch, rng, train):
        labels = batch["label"]
        k_rng, s_rng, p_rng = jax.random.split(rng, 3)
        tokens = table[labels, jax.random.randint(k_rng, labels.shape, 0, table.shape[1])]
        if train and shift_prob > 0.0:
            use = jax.random.bernoulli(p_rng, shift_prob, labels.shape)[:, None]
            tokens = jnp.where(use, shift_prompts(tokens, s_rng), tokens)
        return {**batch, "image": image_fn(batch["image"]), "prompt": tokens}

    return preprocess
