"""The reference CNN (MyNet) on MNIST, trained exactly as the reference recipe does.

    make train                                       # = the line below, embedded data
    python -m experiments.cnn_mnist --workdir runs/cnn_mnist
    python -m experiments.cnn_mnist --config=configs/fashion_mnist_cnn.py --workdir runs/fmnist
    python -m experiments.cnn_mnist --workdir runs/x --config.devices=0  # all devices, data mesh
    jaxdl predict --workdir runs/cnn_mnist digit.png

Recipe (`jaxdl.recipes.image_classifier`): resize 28->48, grayscale->3 channels, random
rotation +-10 deg, brightness and contrast jitter 0.2, normalise (0.1307, 0.3081); Adam
lr 1e-3 with coupled weight decay 1e-4; batch 64; 5 epochs; cross-entropy.
Result (2-core CPU, embedded mnist_5k, 4,000 train / 1,000 test): see the README's
results table (test accuracy ~97%, a few minutes).
"""

from jaxdl import recipes, run
from jaxdl.entry import run_experiment


def get_config():
    return recipes.get("image_classifier").get_config()


main = run.train

if __name__ == "__main__":
    run_experiment(main, get_config, "runs/cnn_mnist")
