"""Sequence-to-sequence: teacher-forced loss and decoding (greedy and beam search).

Batches hold `src` (batch, src_len) and `tgt` (batch, tgt_len + 1) int ids, `tgt` starting
with BOS and padded with `pad_id` after EOS. Teacher forcing feeds `tgt[:, :-1]` and
predicts `tgt[:, 1:]`; padding is excluded from the loss. The model is an
`EncoderDecoder` (`encode`, `decode(tgt, encoded, src, decode=...)`, a KV cache).

Beam search keeps the `beam_size` best partial outputs by total log-probability; a beam
that has emitted EOS only extends with padding at no cost, so finished hypotheses
compete with unfinished ones on equal terms. `beam_size=1` is greedy decoding.
"""

import jax
import jax.numpy as jnp

from jaxdl.data.vocab import BOS_ID as BOS
from jaxdl.data.vocab import EOS_ID as EOS
from jaxdl.data.vocab import PAD_ID as PAD
from jaxdl.tasks.common import finish, token_cross_entropy


def teacher_forcing_loss(params, batch, rng, model, train, *, batch_stats=None, pad_id=PAD,
                         loss_impl: str = "auto"):
    """Mean cross-entropy per target token; `exact` counts fully correct sequences.
    `loss_impl`: plain | chunked | auto (`jaxdl.tasks.common.token_cross_entropy`)."""
    inputs, targets = batch["tgt"][:, :-1], batch["tgt"][:, 1:]
    w = (targets != pad_id).astype(jnp.float32)
    if "mask" in batch:
        w = w * batch["mask"][:, None]
    loss_sum, hits, new_bs = token_cross_entropy(model, params, batch["src"], targets, w, rng,
                                                 train, batch_stats, loss_impl=loss_impl,
                                                 tgt=inputs)
    hit = hits | (w == 0)
    seq_w = batch["mask"] if "mask" in batch else jnp.ones(targets.shape[:1], jnp.float32)
    extra = {"correct": jnp.sum(hit * w), "exact": jnp.sum(jnp.all(hit, -1) * seq_w),
             "sequences": jnp.sum(seq_w)}
    return finish(loss_sum, jnp.sum(w), extra, new_bs, batch_stats)


def beam_search(model, params, src, *, max_len: int, beam_size: int = 4, bos_id: int = BOS,
                eos_id: int = EOS, pad_id: int = PAD):
    """Best output ids (batch, max_len) (after BOS; padded after EOS) and their log-probs."""
    from jaxdl.nn.transformer import init_cache  # only the decoding glue, no training logic

    variables = {"params": params}
    batch = src.shape[0]
    encoded = model.apply(variables, src, method=model.encode)
    tile = lambda x: jnp.repeat(x, beam_size, axis=0)  # noqa: E731  (batch*beam, ...)
    src_k, enc_k = tile(src), tile(encoded)
    cache = init_cache(model, params, batch * beam_size, src=src_k, encoded=enc_k)
    scores = jnp.tile(jnp.array([0.0] + [-1e9] * (beam_size - 1)), (batch, 1))  # (batch, beam)
    out = jnp.full((batch, beam_size, max_len), pad_id, jnp.int32)
    done = jnp.zeros((batch, beam_size), bool)
    last = jnp.full((batch * beam_size, 1), bos_id, jnp.int32)

    def step(carry, t):
        cache, scores, out, done, last = carry
        logits, mutated = model.apply({**variables, "cache": cache}, last, enc_k, src_k,
                                      decode=True, mutable=["cache"], method=model.decode)
        logp = jax.nn.log_softmax(logits[:, -1].astype(jnp.float32))
        vocab = logp.shape[-1]
        logp = logp.reshape(batch, beam_size, vocab)
        only_pad = jnp.full((vocab,), -1e9).at[pad_id].set(0.0)
        logp = jnp.where(done[..., None], only_pad, logp)
        total = (scores[..., None] + logp).reshape(batch, beam_size * vocab)
        scores, flat = jax.lax.top_k(total, beam_size)
        beam, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        gather = lambda x: jnp.take_along_axis(x, beam.reshape(beam.shape + (1,) * (x.ndim - 2)),
                                               axis=1)  # noqa: E731
        out = gather(out).at[:, :, t].set(token)
        done = gather(done) | (token == eos_id)
        flat_beam = (beam + jnp.arange(batch)[:, None] * beam_size).reshape(-1)
        cache = jax.tree.map(lambda x: x[flat_beam] if x.ndim and x.shape[0] == batch
                             * beam_size else x, mutated["cache"])
        return (cache, scores, out, done, token.reshape(-1, 1)), None

    (_, scores, out, _, _), _ = jax.lax.scan(step, (cache, scores, out, done, last),
                                             jnp.arange(max_len))
    return out[:, 0], scores[:, 0]
