"""Text-to-image diffusion: a Transformer text encoder (word or character tokens) and a small
UNet, trained jointly with the shared train step, sampled with classifier-free guidance.

Data: Fashion-MNIST when its IDX files are installed, else the embedded `mnist_5k`
(`--config.dataset`). Each training image is paired with its class in a random training
template ("a photo of an ankle boot"); with probability `cond_drop` the prompt becomes the
empty prompt. Every `eval_every` steps (and at the last) a grid (one row per class,
held-out templates) is written to `samples.png` and scored. The final evaluation:

- `prompt_accuracy`: `fid_samples` images generated for the classes in turn, each from a
  held-out template (DDIM, `eval_steps` steps, guidance `guidance`, EMA parameters); the
  fraction that a ConvNet trained on the real training set (`<workdir>/classifier`, the
  shared step and its own checkpoints) assigns to the prompted class.
- `classifier_fid`: Frechet distance between that ConvNet's penultimate (128-d) features of
  the same generated images and of as many real test images (`jaxdl.evaluators.fid`; not Inception).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import plots
from jaxdl.data import prompts, sources, transforms
from jaxdl.data.loader import ArrayLoader
from jaxdl.errors import UserError
from jaxdl.evaluators import fid
from jaxdl.nn import ConvNet
from jaxdl.nn.text2img import TextToImage
from jaxdl.nn.transformer import Encoder
from jaxdl.nn.unet import UNet
from jaxdl.options import Default, Option, shared
from jaxdl.recipes.base import Recipe, Task
from jaxdl.rules import BOOL, Rule, count, positive_int
from jaxdl.tasks import classify, denoise
from jaxdl.train import (
    create_train_state,
    make_eval_step,
    make_optimizer,
    make_schedule,
    make_train_step,
)
from jaxdl.train.compile import compile_eval, compile_step
from jaxdl.train.loop import Evaluator, evaluate, fit
from jaxdl.train.writer import read_rows

IMAGE_HW = (28, 28)  # the datasets' size; the model sees them padded to config.image_size


class TextToImageDiffusion(Recipe):
    name = "text2img"
    description = "text-to-image diffusion (text encoder + UNet, classifier-free guidance)"
    throughput_unit = "images"
    samples = True
    sample_options = ("out", "guidance", "steps", "sampler", "eta")

    model_options = ("remat", "attention_impl")
    options = (
        shared("dataset", "auto", "auto: fashion_mnist if its IDX files are installed, else "
               "mnist_5k"),
        shared("data_dir", ""),
        shared("image_size", 32, "28x28 padded with black to 32x32, scaled to [-1, 1]"),
        Option("text_level", "word", "word | char: at 1000 steps 37% vs 17% grid prompt "
               "accuracy"),
        Option("max_prompt_len", 64, "BOS + up to 63 tokens", positive_int(4096, 64)),
        Option("prompt_shift", 0.5, "P(prompt moved to a random position) in training",
               Rule(0.0, 1.0, example=0.5)),
        Option("text_layers", 2, "the text encoder's layers"),
        Option("text_heads", 4, "the text encoder's heads"),
        Option("text_dim", 64, "the text encoder's width"),
        Option("channels", (16, 32, 64), "UNet widths at 32x32, 16x16, 8x8"),
        Option("num_res_blocks", 1, "residual blocks per UNet level"),
        Option("attention_levels", (2,), "self-attention at these levels (and in the middle)"),
        Option("cross_attention_levels", (1, 2), "cross-attention to the text at these levels"),
        Option("pooled_text", True, "also add the encoder's BOS output to the time embedding",
               BOOL),
        shared("num_heads", 4),
        Option("groups", 8, "GroupNorm groups"),
        shared("dropout", 0.0),
        Option("noise_schedule", "cosine", "linear | cosine"),
        Option("num_timesteps", 1000, "diffusion steps T", positive_int(10**6, 1000)),
        Option("prediction", "eps", "eps | v: what the UNet predicts"),
        Option("cond_drop", 0.1, "classifier-free guidance: P(prompt -> empty prompt) in "
               "training", Rule(0.0, 1.0, open_high=True, example=0.1)),
        shared("batch_size", 64),
        shared("num_steps", 3000),
        shared("eval_every", 1000, "steps between sample grids (and one at the last step)",
               positive_int(10**9, 1000)),  # the grid needs a period
        Default("checkpoint_every", 250),  # a killed run resumes from there
        shared("learning_rate", 1e-3),
        shared("warmup_steps", 200),
        Option("min_lr_fraction", 0.1, "the cosine schedule ends at this x learning_rate",
               Rule(0.0, 1.0, example=0.1)),
        shared("weight_decay", 0.0),
        Option("grad_clip", 1.0, "clip the gradient's global norm to this",
               Rule(0.0, example=1.0)),
        Option("ema_decay", 0.995, "decay of the parameters' EMA (what samples)",
               Rule(0.0, 1.0, open_high=True, example=0.995)),
        Option("guidance", 5.0, "w (1: conditional, 0: unconditional); 3 -> 5: 90.4% -> "
               "94.6%", Rule(0.0, 100.0, example=5.0)),
        Option("eval_sampler", "ddim", "ddim | ddpm"),
        Option("eval_steps", 25, "sampler steps", positive_int(10**6, 25)),
        Option("eval_eta", 0.0, "DDIM noise; 0: none", Rule(0.0, 1.0, example=0.0)),
        Option("grid_per_class", 10, "grid: one row per class; also the batch of every "
               "sampling call", positive_int(1000, 10)),
        Option("fid_samples", 10_000, "generated and real images for prompt accuracy and FID",
               positive_int(10**7, 10_000)),
        Option("classifier_epochs", 3, "epochs of the judging classifier",
               positive_int(1000, 3)),
        Option("test_loss_images", 2000, "test images for the final diffusion loss; 0: skip",
               count(10**7, 2000)),
        shared("prompt", "an ankle boot", "what `jaxdl sample` draws by default"),
    )

    def load_data(self, config):
        if config.dataset == "auto":
            try:
                split = sources.resolve_image_dataset("fashion_mnist", config.data_dir or None)
                config.dataset = "fashion_mnist"
                return {"split": split, "tokenizer": tokenizer_from_config(config)}
            except UserError:
                config.dataset = "mnist_5k"
                print("dataset 'auto': Fashion-MNIST is not installed; using mnist_5k")
        split = sources.resolve_image_dataset(config.dataset, data_dir=config.data_dir or None)
        return {"split": split, "tokenizer": tokenizer_from_config(config)}

    def check(self, config, data) -> None:
        data["tokenizer"].encode(config.prompt)  # `jaxdl sample`'s default: fail now

    def build_task(self, config, data) -> Task:
        tokenizer = data["tokenizer"]
        model = text_to_image_model(config, tokenizer.vocab_size)
        schedule = denoise.noise_schedule(config.noise_schedule, config.num_timesteps)
        size = config.image_size
        lr = make_schedule(config.learning_rate, "warmup_cosine", total_steps=config.num_steps,
                           warmup_steps=config.warmup_steps,
                           min_learning_rate=config.learning_rate * config.min_lr_fraction)
        tx = make_optimizer("adamw", lr, config.weight_decay, grad_clip_norm=config.grad_clip)
        example = (jnp.zeros((1, size, size, 1), jnp.float32), jnp.zeros((1,), jnp.int32),
                   jnp.asarray(tokenizer.empty[None]))
        preprocess = prompts.make_prompt_preprocess(
            tokenizer.table("train"), lambda x: denoise.to_model_images(x, size),
            config.prompt_shift)
        loss = lambda *a, **k: denoise.diffusion_loss(  # noqa: E731
            *a, schedule=schedule, prediction=config.prediction, cond_drop=config.cond_drop,
            null_cond=tokenizer.empty, **k)
        return Task(model, loss, tx, example, preprocess, learning_rate=lr,
                    ema_decay=config.ema_decay,
                    extra={"schedule": schedule, "tokenizer": tokenizer})

    def train_loader(self, config, data, **shard):
        train = data["split"].train
        print(f"{len(train)} training images; prompts e.g. "
              f"{prompts.prompts(data['tokenizer'].prompt_set)[9][1]!r}")
        return ArrayLoader({"image": train.images, "label": train.labels}, config.batch_size,
                           seed=config.seed, drop_last=True, **shard)

    def sampler(self, config, task, **options):
        return make_sampler(config, task.model, task.extra["schedule"], task.extra["tokenizer"],
                            **options)

    def judge(self, config, data, ctx):
        """The ConvNet that scores generated images (trained once, in <workdir>/classifier)."""
        if "judge" not in data:
            split = data["split"]
            data["judge"] = train_classifier(split.train, split.test, ctx.workdir, config)
        return data["judge"]

    def evaluators(self, config, task, data, ctx) -> list:
        classifier, variables, _ = self.judge(config, data, ctx)
        feature_fn = fid.make_feature_fn(classifier)
        sample_fn = self.sampler(config, task)
        tokenizer = data["tokenizer"]
        batch = data["split"].train.num_classes * config.grid_per_class
        grid_tokens, grid_labels = eval_prompts(tokenizer, batch, grid=True)
        names = class_names(prompts.class_phrases(tokenizer.prompt_set))

        def grid(state, step, writer):
            images = generate(sample_fn, ctx.placement.local(state.ema_params), grid_tokens,
                              jax.random.PRNGKey(config.seed), config.guidance, batch)
            acc = float(np.mean(fid.features(feature_fn, variables, images)[0].argmax(-1)
                                == grid_labels))
            if ctx.is_main:
                path = plots.plot_image_grid(images, ctx.workdir / "samples.png",
                                             nrow=len(names), row_labels=names)
                writer.images(step, {"samples": plots.read_png(path)})
            ctx.say(f"step {step}: prompt accuracy of the {len(images)}-image grid "
                    f"{100 * acc:.1f}%")
            return {"prompt_accuracy": acc, "guidance": config.guidance}

        return [Evaluator("grid", config.eval_every, grid, at_end=True)]

    def evaluate(self, config, task, data, state, ctx) -> dict:
        classifier, variables, cls_acc = self.judge(config, data, ctx)
        feature_fn = fid.make_feature_fn(classifier)
        split, tokenizer = data["split"], data["tokenizer"]
        train, test = split.train, split.test
        names = class_names(prompts.class_phrases(tokenizer.prompt_set))
        n = config.fid_samples
        tokens, labels = eval_prompts(tokenizer, n)
        images = generate(self.sampler(config, task), ctx.placement.local(state.ema_params), tokens,
                          jax.random.PRNGKey(config.seed + 1), config.guidance,
                          train.num_classes * config.grid_per_class)
        gen_logits, gen_feats = fid.features(feature_fn, variables, images)
        real = np.asarray(transforms.to_float(test.images[:n]))
        _, real_feats = fid.features(feature_fn, variables, real)
        train_feats = fid.features(feature_fn, variables,
                                   np.asarray(transforms.to_float(train.images[:n])))[1]
        hits = gen_logits.argmax(-1) == labels
        out = {
            "prompt_accuracy": float(hits.mean()),
            "prompt_accuracy_per_class": {names[c]: float(hits[labels == c].mean())
                                          for c in range(len(names)) if (labels == c).any()},
            "classifier_fid": fid.frechet_distance(gen_feats, real_feats),
            "classifier_fid_real_train_vs_test": fid.frechet_distance(train_feats, real_feats),
            "fid_samples": int(len(images)), "fid_real_samples": int(len(real_feats)),
            "classifier_test_accuracy": cls_acc,
        }
        out["test_accuracy"] = out["prompt_accuracy"]  # the README table's generic field
        if config.test_loss_images:  # the diffusion loss (EMA params, training templates)
            m = config.test_loss_images
            loader = ctx.eval_loader({"image": test.images[:m], "label": test.labels[:m]}, 500)
            out["test_loss"] = evaluate(ctx.eval_step(task, use_ema=True), state, loader,
                                        put_batch=ctx.placement.put_batch)["loss"]
        ctx.say(f"prompt accuracy (held-out templates, {len(images)} images): "
                f"{100 * out['prompt_accuracy']:.2f}%; classifier FID "
                f"{out['classifier_fid']:.2f} (real train vs test: "
                f"{out['classifier_fid_real_train_vs_test']:.2f})")
        return out

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        train = data["split"].train
        steps = int(state.step)
        rows = [r for r in read_rows(ctx.workdir) if "grid/prompt_accuracy" in r]
        evals = {r["step"]: {"step": r["step"], "grid_prompt_accuracy": r["grid/prompt_accuracy"],
                             "guidance": r.get("grid/guidance")} for r in rows}
        if ctx.figures and ctx.is_main:
            plots.plot_curves(history, ["loss"], ctx.workdir / "curves.png", xlabel="step",
                              title="diffusion loss")
        return {"dataset": train.name, "source": train.source, "num_steps": steps,
                "epochs": steps * config.batch_size / len(train),
                "train_seconds": sum(r["seconds"] for r in history),  # every run of a resume
                "steps_per_second": sum(r["count"] for r in history) / config.batch_size / max(
                    sum(r["seconds"] for r in history), 1e-9),
                "sampler": f"{config.eval_sampler} {config.eval_steps} steps, eta "
                           f"{config.eval_eta}, guidance {config.guidance}",
                "evaluations": [evals[k] for k in sorted(evals)]}

    def check_sample(self, num, *, out=None, **options) -> None:
        if out is not None and out.suffix.lower() != ".png":
            raise UserError(f"--out {out} must name a .png file (the sample grid is a PNG)")
        if num is not None and num > 1024:
            raise UserError(f"--num {num} images is more than one grid holds; ask for "
                            "at most 1024")

    def sample(self, config, task, data, state, *, prompt, num, seed, out, guidance=None,
               steps=None, sampler=None, eta=None) -> str:
        """A PNG grid of `num` images for `prompt` (EMA parameters); "" = unconditional."""
        prompt = config.prompt if prompt is None else prompt
        num = 16 if num is None else num
        tokens = np.repeat(data["tokenizer"].encode(prompt)[None], num, 0)
        fn = self.sampler(config, task, sampler=sampler, steps=steps, eta=eta)
        params = state.ema_params if state.ema_params is not None else state.params
        images = generate(fn, params, tokens, jax.random.PRNGKey(seed),
                          config.guidance if guidance is None else guidance, batch_size=num)
        path = plots.plot_image_grid(images, out or "samples.png",
                                     nrow=max(1, int(math.sqrt(num))))
        return f"wrote {num} samples of {prompt!r} (checkpoint step {int(state.step)}) to {path}"


def tokenizer_from_config(config) -> prompts.PromptTokenizer:
    return prompts.PromptTokenizer(prompts.prompt_set_for(config.dataset), config.text_level,
                                   config.max_prompt_len)


def text_to_image_model(config, vocab_size: int) -> TextToImage:
    encoder = Encoder(vocab_size, num_layers=config.text_layers, num_heads=config.text_heads,
                      dim=config.text_dim, max_len=config.max_prompt_len, pad_id=0,
                      positional="learned")
    unet = UNet(channels=tuple(config.channels), num_res_blocks=config.num_res_blocks,
                attention_levels=tuple(config.attention_levels),
                cross_attention_levels=tuple(config.cross_attention_levels),
                num_heads=config.num_heads, groups=config.groups, dropout=config.dropout,
                num_timesteps=config.num_timesteps)
    return TextToImage(encoder=encoder, unet=unet, pooled_text=config.get("pooled_text", True))


def make_sampler(config, model, schedule, tokenizer, *, sampler=None, steps=None, eta=None):
    """jitted `(params, tokens, rng, guidance) -> images (B, 28, 28, 1)` in [0, 1]."""
    size = config.image_size
    run = denoise.text_to_image_sampler(
        model, schedule, image_shape=(size, size, 1), null_tokens=tokenizer.empty,
        sampler=sampler or config.eval_sampler,
        num_steps=steps or config.eval_steps, eta=config.eval_eta if eta is None else eta,
        prediction=config.prediction)
    return jax.jit(lambda params, tokens, rng, guidance: denoise.from_model_images(
        run(params, tokens, rng, guidance), *IMAGE_HW))


def generate(sample_fn, params, tokens: np.ndarray, rng, guidance: float,
             batch_size: int = 250) -> np.ndarray:
    """Images for every row of `tokens`, in batches of one compiled size (last one padded)."""
    out = []
    for i in range(0, len(tokens), batch_size):
        chunk = tokens[i:i + batch_size]
        n = len(chunk)
        if n < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, 0)])
        images = sample_fn(params, jnp.asarray(chunk), jax.random.fold_in(rng, i),
                           jnp.float32(guidance))
        out.append(np.asarray(jax.device_get(images))[:n])
    return np.concatenate(out) if out else np.zeros((0, *IMAGE_HW, 1), np.float32)


def train_classifier(train, test, workdir, config):
    """The judge: a ConvNet on the real 28x28 training images, through the shared step."""
    model = ConvNet(num_classes=train.num_classes, features=(32, 64), dense=(128,),
                    dropout_rate=0.3)
    state = jax.jit(lambda rng: create_train_state(  # jit: one compile, not op by op
        model, make_optimizer("adam", 1e-3), rng, jnp.zeros((1, 28, 28, 1))))(
        jax.random.PRNGKey(1))
    pre = lambda b, rng, train: {**b, "image": transforms.to_float(b["image"])}  # noqa: E731
    step = compile_step(make_train_step(classify.softmax_cross_entropy, model, preprocess=pre))
    loader = ArrayLoader({"image": train.images, "label": train.labels}, 128, seed=1)
    state, _ = fit(state, step, loader, workdir=workdir / "classifier",
                   epochs=config.classifier_epochs, verbose=False, log=False)
    test_loader = ArrayLoader({"image": test.images, "label": test.labels}, 500, shuffle=False)
    acc = evaluate(compile_eval(make_eval_step(classify.softmax_cross_entropy, model,
                                               preprocess=pre)), state, test_loader)["accuracy"]
    print(f"classifier (ConvNet) test accuracy on real images: {100 * acc:.2f}%")
    return model, {"params": state.params}, acc


def eval_prompts(tokenizer, n: int, grid: bool = False):
    """`n` prompts from the held-out templates and their labels: classes in turn (so any
    prefix is balanced), or with `grid` class by class (one grid row per class)."""
    held = tokenizer.table("held_out")  # (classes, templates, len)
    classes, templates = held.shape[:2]
    i = np.arange(n)
    labels, k = (i // (n // classes), i % (n // classes)) if grid else (i % classes,
                                                                        i // classes)
    return held[labels, k % templates], labels


def class_names(phrases) -> list[str]:
    return [p.get("a", p.get("w")) for p in phrases]
