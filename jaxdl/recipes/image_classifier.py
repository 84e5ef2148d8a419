"""Image classifiers: the reference CNN (MyNet) trained exactly as the reference recipe does.

Recipe: resize 28->48, grayscale->3 channels, random rotation +-10 deg, brightness and
contrast jitter 0.2, normalise (0.1307, 0.3081); Adam lr 1e-3 with coupled weight
decay 1e-4; batch 64; 5 epochs; cross-entropy. Augmentation runs on device inside the
jitted train step. Evaluation: the reference's test report (loss, accuracy,
precision/recall/F1, confusion matrix). `jaxdl predict` runs images of any size through
the test transform.
"""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import plots
from jaxdl.data import sources, transforms
from jaxdl.data.loader import ArrayLoader
from jaxdl.errors import UserError
from jaxdl.evaluators.classification import classification_report, labels_of, logits_function
from jaxdl.nn import MyNet
from jaxdl.options import Option, shared
from jaxdl.recipes.base import Context, Recipe, Task
from jaxdl.rules import BOOL, Rule
from jaxdl.tasks import classify
from jaxdl.train import make_optimizer

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageClassifier(Recipe):
    name = "image_classifier"
    description = "the reference CNN (MyNet) on MNIST-like images"
    throughput_unit = "images"
    predicts = True

    options = (
        shared("dataset", "auto", "auto: full `mnist` if a local copy exists, else the "
               "embedded `mnist_5k`; mnist_5k | mnist | fashion_mnist | tfds:NAME | "
               "array_record:DIR | synthetic"),
        shared("data_dir", ""),
        shared("image_size", 48, "IMG_SIZE: the model expects 48x48"),
        shared("batch_size", 64, "BATCH_SIZE"),
        shared("eval_batch_size", 256, "the reference's test loader"),
        shared("epochs", 5, "EPOCHS"),
        shared("optimizer", "adam"),
        shared("learning_rate", 1e-3, "LEARNING_RATE"),
        shared("weight_decay", 1e-4, "WEIGHT_DECAY, coupled L2 as torch.optim.Adam applies it"),
        Option("augment", True, "RandomRotation + ColorJitter on the training set", BOOL),
        Option("rotation_degrees", 10.0, "the rotation's range, +-degrees",
               Rule(0.0, 180.0, example=10.0)),
        Option("jitter", 0.2, "brightness and contrast jitter", Rule(0.0, 1.0, example=0.2)),
        shared("dropout", 0.5),
    )

    def load_data(self, config):
        if config.dataset == "auto":
            config.dataset = ("mnist" if sources.mnist_available(config.data_dir or None)
                              else "mnist_5k")
            print(f"dataset 'auto' -> {config.dataset}")
        split = sources.resolve_image_dataset(config.dataset, data_dir=config.data_dir or None)
        classify.check_labels(split.train.labels, split.train.num_classes)
        return split

    def build_task(self, config, data) -> Task:
        model = MyNet(num_classes=data.train.num_classes, dropout_rate=config.dropout)
        tx = make_optimizer(config.optimizer, config.learning_rate, config.weight_decay)
        size = config.image_size
        preprocess = transforms.make_preprocess(size=size, augment=config.augment,
                                                degrees=config.rotation_degrees,
                                                brightness=config.jitter,
                                                contrast=config.jitter)
        return Task(model, classify.softmax_cross_entropy, tx,
                    jnp.zeros((1, size, size, 3), jnp.float32), preprocess,
                    learning_rate=config.learning_rate)

    def train_loader(self, config, data, **shard):
        train = data.train
        print(f"Training on {len(train)} samples, validating on {len(data.test)} samples.")
        return ArrayLoader({"image": train.images, "label": train.labels}, config.batch_size,
                           seed=config.seed, **shard)

    def evaluate(self, config, task, data, state, ctx: Context) -> dict:
        test = data.test
        loader = ctx.eval_loader({"image": test.images, "label": test.labels},
                                 config.eval_batch_size)
        logits_fn = ctx.placement.compile_eval(logits_function(task.model, task.preprocess))
        labels_fn = None if ctx.placement.mesh is None else ctx.placement.compile_eval(labels_of)
        return classification_report(logits_fn, state, loader, num_classes=test.num_classes,
                                     class_names=test.class_names,
                                     workdir=ctx.workdir if ctx.figures and ctx.is_main else None,
                                     verbose=ctx.is_main and ctx.verbose,
                                     put_batch=ctx.placement.put_batch, labels_fn=labels_fn)

    def report(self, config, task, data, state, history, ctx, writer) -> dict:
        if ctx.figures and ctx.is_main:
            plots.plot_curves(history, ["loss", "accuracy"], ctx.workdir / "curves.png",
                              title=f"MyNet on {data.train.name}")
            writer.images(int(state.step), {"confusion_matrix": plots.read_png(
                ctx.workdir / "confusion_matrix.png")})
        rows = [r for r in history if not r.get("partial")]
        return {"dataset": data.train.name, "source": data.train.source,
                "epochs": config.epochs, "num_train": len(data.train),
                "train_loss": rows[-1]["loss"] if rows else None,
                "train_accuracy": rows[-1]["accuracy"] if rows else None,
                "images_per_second": sum(r["count"] for r in history) / max(
                    sum(r["seconds"] for r in history), 1e-9)}

    def predict(self, config, task, data, state, images: list) -> list:
        """Top-3 classes with probabilities for each image file."""
        hw = data.test.image_shape
        batch = np.stack([load_image(p, hw) for p in images])
        logits_fn = jax.jit(logits_function(task.model, task.preprocess))
        probs = np.asarray(jax.nn.softmax(logits_fn(state, {"image": batch}), -1))
        names = data.test.class_names
        out = []
        for path, p in zip(images, probs, strict=True):
            top = np.argsort(-p)[:3]
            out.append({"file": str(path), "top": [
                {"class": names[i], "index": int(i), "probability": float(p[i])} for i in top]})
        return out


def load_image(path, hw: tuple[int, int, int]) -> np.ndarray:
    """An image file (any size, grey or colour) as the dataset's (H, W, C) uint8 images."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("L" if hw[-1] == 1 else "RGB").resize(hw[1::-1], Image.BILINEAR)
            a = np.asarray(im, np.uint8)
    except FileNotFoundError:
        raise UserError(f"image {path} not found; pass PNG or JPEG files") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read {path} as an image ({e.__class__.__name__}); pass PNG "
                        "or JPEG files") from None
    return a.reshape(hw)
