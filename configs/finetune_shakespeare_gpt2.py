"""Fine-tune a pretrained GPT-2 on tiny shakespeare, as nanoGPT's `finetune_shakespeare`
does: the checkpoint's shape, tokenizer and weights, a small constant learning rate, few
iterations.

    # once, where the Hugging Face Hub is reachable: GPT-2 (124M) in its own layout
    #   huggingface-cli download openai-community/gpt2 config.json model.safetensors \\
    #     tokenizer.json --local-dir ~/models/gpt2
    jaxdl train --config=configs/finetune_shakespeare_gpt2.py --workdir runs/ft_gpt2
    jaxdl sample --workdir runs/ft_gpt2 --prompt "ROMEO:" --num 100

`init_from=hf:~/models/gpt2` gives 12 layers of 768, context 1024 and GPT-2's 50,257-token
BPE tokenizer (from the directory's tokenizer.json; the text is split 90/10 by characters,
then tokenized). As nanoGPT: 32 sequences of 1024 tokens an update (1 a microbatch, 32
accumulated), 20 updates at a constant 3e-5 (AdamW, beta2 0.95, weight decay 0.1, clip
1.0), no dropout, the validation loss every 5 updates over 40 windows. Add
`--config.dtype=bfloat16` on an accelerator.

results.json holds the before and after: `init_val_loss` (the checkpoint's own loss on the
validation windows) and `val_loss`, with `init_val_bpc` and `val_bpc`.

Result: not measured yet. GPT-2's weights cannot be fetched where jaxdl is developed (no
network), so the row of the results table waits for a machine that has them; the import,
the tokenizer, the run from a checkpoint and its exact resume are tested on a small GPT-2
(tests/test_pretrained.py).
"""

from jaxdl import recipes


def get_config():
    c = recipes.get("decoder_lm").nanogpt_config()
    c.init_from = "hf:~/models/gpt2"
    c.seq_len = 1024
    c.batch_size, c.grad_accum_steps = 32, 32
    c.num_steps, c.batches_per_epoch = 20, 5
    c.learning_rate = c.min_learning_rate = 3e-5
    c.warmup_steps = 0
    c.beta2, c.weight_decay, c.grad_clip_norm = 0.95, 0.1, 1.0
    c.dropout = 0.0
    c.eval_every, c.val_windows, c.eval_batch_size = 5, 40, 8
    return c
