"""Text-to-image diffusion: a Transformer text encoder and a small UNet, trained jointly with
the shared train step, sampled with classifier-free guidance.

    python -m experiments.diffusion_text2img --workdir runs/diffusion
    python -m experiments.diffusion_text2img --workdir runs/d --config.num_steps=500 \\
        --config.fid_samples=500
    jaxdl sample --workdir runs/diffusion --prompt "an ankle boot" --num 16 --out boot.png

Recipe and its evaluation (grid every `eval_every` steps, prompt accuracy and classifier
FID on `fid_samples` images): `jaxdl.recipes.text2img`. Result (Fashion-MNIST, 3,000 steps,
2-core CPU): 95.34% prompt accuracy on held-out templates, classifier FID 15.20 (README).
"""

from jaxdl import recipes, run
from jaxdl.entry import run_experiment


def get_config():
    return recipes.get("text2img").get_config()


main = run.train

if __name__ == "__main__":
    run_experiment(main, get_config, "runs/diffusion_text2img")
