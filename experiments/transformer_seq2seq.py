"""An encoder-decoder Transformer that reads dates as people write them and outputs ISO dates.

    python -m experiments.transformer_seq2seq --workdir runs/dates
    python -m experiments.transformer_seq2seq --config=configs/dates_small.py --workdir runs/d
    jaxdl sample --workdir runs/dates --prompt "5 mars 1998"          # -> 1998-03-05

Recipe: `jaxdl.recipes.seq2seq` (twelve English and French formats, disjoint train/test
dates, teacher forcing, beam search). Results: see the README's results table.
"""

from jaxdl import recipes, run
from jaxdl.entry import run_experiment


def get_config():
    return recipes.get("seq2seq").get_config()


main = run.train

if __name__ == "__main__":
    run_experiment(main, get_config, "runs/transformer_seq2seq")
