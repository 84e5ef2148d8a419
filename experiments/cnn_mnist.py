"""The reference CNN (MyNet) on MNIST, trained exactly as the reference recipe does.

    make train                                       # = the line below, embedded data
    python -m experiments.cnn_mnist --workdir runs/cnn_mnist
    python -m experiments.cnn_mnist --workdir runs/fmnist --config.dataset=fashion_mnist
    python -m experiments.cnn_mnist --workdir runs/x --config.devices=0  # all devices, data mesh

Recipe: resize 28->48, grayscale->3 channels, random rotation +-10 deg, brightness and
contrast jitter 0.2, normalise (0.1307, 0.3081); Adam lr 1e-3 with coupled weight
decay 1e-4; batch 64; 5 epochs; cross-entropy. Augmentation runs on device inside
the jitted train step. Results (2-core CPU): see the README's results table.
"""

import time

import jax
import jax.numpy as jnp
import ml_collections

from jaxdl import plots
from jaxdl.config import run_experiment, write_results
from jaxdl.data import sources, transforms
from jaxdl.data.loader import ArrayLoader
from jaxdl.nn import MyNet
from jaxdl.tasks import classify
from jaxdl.train import create_train_state, make_optimizer, make_train_step, parallel
from jaxdl.train.loop import fit
from jaxdl.train.report import classification_report, make_logits_fn


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.dataset = "auto"  # auto: full `mnist` if a local copy exists, else embedded `mnist_5k`
    c.data_dir = ""  # local IDX directory or TFDS data_dir, where the dataset needs one
    c.image_size = 48  # IMG_SIZE: the model expects 48x48
    c.batch_size = 64  # BATCH_SIZE
    c.eval_batch_size = 256  # the reference's test loader
    c.epochs = 5  # EPOCHS
    c.optimizer = "adam"
    c.learning_rate = 1e-3  # LEARNING_RATE
    c.weight_decay = 1e-4  # WEIGHT_DECAY, coupled L2 as torch.optim.Adam applies it
    c.augment = True  # RandomRotation(10) + ColorJitter(0.2, 0.2) on the training set
    c.rotation_degrees = 10.0
    c.jitter = 0.2
    c.dropout = 0.5
    c.seed = 0
    c.devices = 1  # 1: one device; 0: all devices of all processes (batches split); n: first n
    c.distributed = False  # join a multi-host run (TPU VMs: nothing else to set)
    return c


def load_data(config):
    name = config.dataset
    if name == "auto":
        name = "mnist" if sources.mnist_available(config.data_dir or None) else "mnist_5k"
        print(f"dataset 'auto' -> {name}")
    return sources.resolve_image_dataset(name, data_dir=config.data_dir or None)


def main(config, workdir):
    mesh = parallel.mesh_from_config(config)  # before anything touches a device
    split = load_data(config)
    train, test = split.train, split.test
    classify.check_labels(train.labels, train.num_classes)
    print(f"Training on {len(train)} samples, validating on {len(test)} samples.")

    model = MyNet(num_classes=train.num_classes, dropout_rate=config.dropout)
    tx = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
    size = config.image_size
    example = jnp.zeros((1, size, size, 3), jnp.float32)
    state = create_train_state(model, tx, jax.random.PRNGKey(config.seed), example)
    preprocess = transforms.make_preprocess(size=size, augment=config.augment,
                                            degrees=config.rotation_degrees,
                                            brightness=config.jitter, contrast=config.jitter)
    state, train_step, fit_kw = parallel.place_training(
        state, make_train_step(classify.softmax_cross_entropy, model, preprocess=preprocess),
        mesh)
    loader = ArrayLoader({"image": train.images, "label": train.labels}, config.batch_size,
                         seed=config.seed, **parallel.process_shard())
    test_loader = ArrayLoader({"image": test.images, "label": test.labels},
                              config.eval_batch_size, shuffle=False)

    t0 = time.perf_counter()
    state, history = fit(state, train_step, loader, workdir=workdir, epochs=config.epochs,
                         **fit_kw)
    train_seconds = time.perf_counter() - t0
    main_process = parallel.is_main_process()
    if main_process:
        print("\n✅ Training finished.\n")
    if mesh is not None:  # evaluate on one device per process; only process 0 writes files
        state = parallel.local_copy(state)

    logits_fn = make_logits_fn(model, preprocess)
    results = classification_report(logits_fn, state, test_loader, num_classes=test.num_classes,
                                     class_names=test.class_names,
                                     workdir=workdir if main_process else None,
                                     verbose=main_process)
    if main_process:
        plots.plot_curves(history, ["loss", "accuracy"], workdir / "curves.png",
                          title=f"MyNet on {train.name}")
    epoch_rows = [r for r in history if not r.get("partial")]
    results.update(
        dataset=train.name, source=train.source, epochs=config.epochs,
        num_train=len(train), train_seconds=train_seconds,
        train_loss=epoch_rows[-1]["loss"] if epoch_rows else None,
        train_accuracy=epoch_rows[-1]["accuracy"] if epoch_rows else None,
        images_per_second=sum(r["count"] for r in history) / max(
            sum(r["seconds"] for r in history), 1e-9),
        device=str(jax.devices()[0].device_kind),
    )
    if main_process:
        write_results(workdir, results)
        print(f"Wrote {workdir / 'results.json'}")
    return results


if __name__ == "__main__":
    run_experiment(main, get_config, "runs/cnn_mnist")
