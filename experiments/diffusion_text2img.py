"""Text-to-image diffusion: a Transformer text encoder (word or character tokens) and a small
UNet, trained jointly with the shared train step, sampled with classifier-free guidance.

    python -m experiments.diffusion_text2img --workdir runs/diffusion
    python -m experiments.diffusion_text2img --workdir runs/d --config.num_steps=500 \
        --config.fid_samples=500
    jaxdl sample --workdir runs/diffusion --prompt "an ankle boot" --num 16 --out boot.png

Data: Fashion-MNIST when its IDX files are installed, else the embedded `mnist_5k`
(`--config.dataset`). Each training image is paired with its class in a random training
template ("a photo of an ankle boot"); with probability `cond_drop` the prompt becomes the
empty prompt. Every `eval_every` steps a grid (one row per class, held-out templates) is
written to `samples.png`. At the end, `results.json` gets:

- `prompt_accuracy`: `fid_samples` images generated for the classes in turn, each from a
  held-out template (DDIM, `eval_steps` steps, guidance `guidance`, EMA parameters); the
  fraction that a ConvNet trained on the real training set (`<workdir>/classifier`, the
  shared step and its own checkpoints) assigns to the prompted class.
- `classifier_fid`: Frechet distance between that ConvNet's penultimate (128-d) features of
  the same generated images and of as many real test images (`jaxdl.fid`; not Inception).
Results (2-core CPU): see the README's results table.
"""

import json
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import diffusion, fid, plots
from jaxdl.config import run_experiment, save_config, write_results
from jaxdl.data import prompts, sources, transforms
from jaxdl.data.loader import ArrayLoader
from jaxdl.errors import UserError
from jaxdl.nn import ConvNet
from jaxdl.tasks import classify, denoise
from jaxdl.train import create_train_state, make_eval_step, make_optimizer, make_train_step
from jaxdl.train.loop import compile_step, evaluate, fit


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "auto"  # auto: fashion_mnist if its IDX files are installed, else mnist_5k
    c.data_dir = ""
    c.image_size = 32  # 28x28 padded with black to 32x32, scaled to [-1, 1]
    c.text_level = "word"  # word | char: at 1000 steps, 37% vs 17% grid prompt accuracy (README)
    c.max_prompt_len = 64  # BOS + up to 63 characters
    c.prompt_shift = 0.5  # P(prompt moved to a random position) in training
    c.text_layers, c.text_heads, c.text_dim = 2, 4, 64
    c.channels = (16, 32, 64)  # UNet widths at 32x32, 16x16, 8x8
    c.num_res_blocks = 1
    c.attention_levels = (2,)  # self-attention at 8x8 (and in the middle)
    c.cross_attention_levels = (1, 2)  # cross-attention to the text at 16x16 and 8x8
    c.pooled_text = True  # also add the encoder's BOS output to the time embedding
    c.num_heads, c.groups, c.dropout = 4, 8, 0.0
    c.noise_schedule = "cosine"  # linear | cosine
    c.num_timesteps = 1000
    c.prediction = "eps"  # eps | v
    c.cond_drop = 0.1  # classifier-free guidance: P(prompt -> empty prompt) in training
    c.batch_size = 64
    c.num_steps = 3000
    c.eval_every = 1000  # steps between sample grids
    c.checkpoint_every = 250  # steps between checkpoints (a killed run resumes from there)
    c.learning_rate = 1e-3
    c.warmup_steps = 200
    c.min_lr_fraction = 0.1
    c.weight_decay = 0.0
    c.grad_clip = 1.0
    c.ema_decay = 0.995
    c.guidance = 5.0  # w (1: conditional, 0: unconditional); 3 -> 5: 90.4% -> 94.6% (README)
    c.eval_sampler = "ddim"
    c.eval_steps = 25
    c.eval_eta = 0.0
    c.grid_per_class = 10  # grid: one row per class; also the batch of every sampling call
    c.fid_samples = 10_000  # generated and real images for prompt accuracy and FID
    c.classifier_epochs = 3
    c.test_loss_images = 2000  # test images for the final diffusion loss (0: skip)
    c.seed = 0
    return c


def load_data(config):
    if config.dataset == "auto":
        try:
            split = sources.resolve_image_dataset("fashion_mnist", config.data_dir or None)
            config.dataset = "fashion_mnist"
            return split
        except UserError:
            config.dataset = "mnist_5k"
            print("dataset 'auto': Fashion-MNIST is not installed; using mnist_5k")
    return sources.resolve_image_dataset(config.dataset, data_dir=config.data_dir or None)


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
                   epochs=config.classifier_epochs, verbose=False)
    test_loader = ArrayLoader({"image": test.images, "label": test.labels}, 500, shuffle=False)
    acc = evaluate(jax.jit(make_eval_step(classify.softmax_cross_entropy, model,
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


def main(config, workdir):
    split = load_data(config)
    save_config(config, workdir)  # records the resolved dataset for `jaxdl sample`
    train, test = split.train, split.test
    tokenizer, model, schedule, state = diffusion.build(config)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    print(f"TextToImage: {n_params:,} parameters; {len(train)} training images; prompts e.g. "
          f"{prompts.prompts(tokenizer.prompt_set)[9][1]!r}")
    size = config.image_size
    preprocess = prompts.make_prompt_preprocess(
        tokenizer.table("train"), lambda x: denoise.to_model_images(x, size),
        config.prompt_shift)
    loss = lambda *a, **k: denoise.diffusion_loss(  # noqa: E731
        *a, schedule=schedule, prediction=config.prediction, cond_drop=config.cond_drop,
        null_cond=tokenizer.empty, **k)
    step = compile_step(make_train_step(loss, model, preprocess=preprocess))
    loader = ArrayLoader({"image": train.images, "label": train.labels}, config.batch_size,
                         seed=config.seed, drop_last=True)
    sample_fn = diffusion.make_sampler(config, model, schedule, tokenizer)
    batch = train.num_classes * config.grid_per_class  # every sampling call's batch size
    grid_tokens, grid_labels = eval_prompts(tokenizer, batch, grid=True)
    names = class_names(prompts.class_phrases(tokenizer.prompt_set))
    classifier, cls_vars, cls_acc = train_classifier(train, test, workdir, config)
    feature_fn = fid.make_feature_fn(classifier)

    history, done = [], int(state.step)
    targets = list(range(config.eval_every, config.num_steps, config.eval_every))
    for target in [*targets, config.num_steps]:
        state, history = fit(state, step, loader, workdir=workdir, num_steps=target,
                             checkpoint_every=config.checkpoint_every)
        if int(state.step) != target:  # resumed past this point: evaluated before the restart
            continue
        images = diffusion.generate(sample_fn, state.ema_params, grid_tokens,
                                    jax.random.PRNGKey(config.seed), config.guidance,
                                    batch)
        acc = float(np.mean(fid.features(feature_fn, cls_vars, images)[0].argmax(-1)
                            == grid_labels))
        plots.plot_image_grid(images, workdir / "samples.png", nrow=len(names), row_labels=names)
        record = {"step": target, "grid_prompt_accuracy": acc, "guidance": config.guidance}
        with open(workdir / "evaluations.jsonl", "a") as f:  # kept across resumes
            f.write(json.dumps(record) + "\n")
        print(f"step {target}: prompt accuracy of the {len(images)}-image grid {100 * acc:.1f}%")
        done = target
    evals = {e["step"]: e for e in map(json.loads, (workdir / "evaluations.jsonl").open())}
    evals = [evals[k] for k in sorted(evals)]  # one per step, the latest
    steps_per_second = sum(r["count"] for r in history) / config.batch_size / max(
        sum(r["seconds"] for r in history), 1e-9)

    t0 = time.perf_counter()
    n = config.fid_samples
    tokens, labels = eval_prompts(tokenizer, n)
    images = diffusion.generate(sample_fn, state.ema_params, tokens,
                                jax.random.PRNGKey(config.seed + 1), config.guidance,
                                batch)
    gen_logits, gen_feats = fid.features(feature_fn, cls_vars, images)
    gen_seconds = time.perf_counter() - t0
    real = transforms.to_float(test.images[:n])
    _, real_feats = fid.features(feature_fn, cls_vars, np.asarray(real))
    hits = gen_logits.argmax(-1) == labels
    results = {
        "dataset": train.name, "source": train.source, "num_steps": done,
        "epochs": done * config.batch_size / len(train),
        "train_seconds": sum(r["seconds"] for r in history),  # every run of a resumed one
        "steps_per_second": steps_per_second, "num_params": int(n_params),
        "prompt_accuracy": float(hits.mean()),
        "prompt_accuracy_per_class": {names[c]: float(hits[labels == c].mean())
                                      for c in range(len(names)) if (labels == c).any()},
        "classifier_fid": fid.frechet_distance(gen_feats, real_feats),
        "classifier_fid_real_train_vs_test": fid.frechet_distance(fid.features(
            feature_fn, cls_vars, np.asarray(transforms.to_float(train.images[:n])))[1],
            real_feats),
        "fid_samples": int(len(images)), "fid_real_samples": int(len(real_feats)),
        "classifier_test_accuracy": cls_acc, "eval_seconds": gen_seconds,
        "sampler": f"{config.eval_sampler} {config.eval_steps} steps, eta {config.eval_eta}, "
                   f"guidance {config.guidance}",
        "evaluations": evals, "device": str(jax.devices()[0].device_kind),
    }
    results["test_accuracy"] = results["prompt_accuracy"]  # the README table's generic field
    if config.test_loss_images:  # the diffusion loss (EMA params, training templates)
        m = config.test_loss_images
        test_loader = ArrayLoader({"image": test.images[:m], "label": test.labels[:m]},
                                  min(m, 500), shuffle=False)
        results["test_loss"] = evaluate(jax.jit(make_eval_step(
            loss, model, preprocess=preprocess, use_ema=True)), state, test_loader)["loss"]
    print(f"prompt accuracy (held-out templates, {len(images)} images): "
          f"{100 * results['prompt_accuracy']:.2f}%; classifier FID "
          f"{results['classifier_fid']:.2f} (real train vs test: "
          f"{results['classifier_fid_real_train_vs_test']:.2f}); {gen_seconds:.0f} s")
    plots.plot_curves(history, ["loss"], workdir / "curves.png", xlabel="step",
                      title="diffusion loss")
    write_results(workdir, results)
    return results


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/diffusion_text2img")
