"""The reference CNN recipe on Fashion-MNIST (60,000 train / 10,000 test).

    apt-get install -y dataset-fashion-mnist      # the IDX files, offline (docs/data.md)
    python -m jaxdl.run --config=configs/fashion_mnist_cnn.py --workdir runs/fashion_mnist
    jaxdl predict --workdir runs/fashion_mnist boot.png

Result (2-core x86-64 CPU shared with up to four other jobs, 5 epochs, 5,850 s): test
accuracy 91.58%, test loss 0.2321 (README, results table).
"""

from jaxdl import recipes


def get_config():
    config = recipes.get("image_classifier").get_config()
    config.dataset = "fashion_mnist"
    return config
