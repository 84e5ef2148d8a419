"""Recurrent language models: embedding -> stacked RNN / LSTM / GRU layers -> vocabulary logits.

Each layer is flax's `nn.RNN` over one of flax's cells, i.e. a `lax.scan` of the cell
over time: the cell is traced once, whatever the sequence length. The model can also
start from a carried state and return the state it ends in, so text is generated one
cell step per new token instead of re-reading the whole prefix each time.

What the hidden state carries. At step t the cell folds the input x_t into its state
h_t = f(h_{t-1}, x_t), so h_t is a fixed-size summary of everything read so far; the
output layer predicts token t+1 from h_t alone.

`rnn` (flax `SimpleCell`): h_t = tanh(W x_t + U h_{t-1} + b). Back-propagating from a
loss at step T to step t multiplies T - t Jacobians diag(1 - h_k^2) U. With tanh's slope
at most 1 and U's gain near or below 1, the product shrinks geometrically: the gradient
from a token 50 steps back is many orders of magnitude smaller than from the last one, so
the network cannot learn to use distant context (the vanishing gradient; see
`experiments/vanishing_gradients.py`, which measures it).

`lstm` (flax `OptimizedLSTMCell`, parameters compatible with `LSTMCell`): a separate cell
state c_t is updated additively, c_t = f * c_{t-1} + i * g, with three sigmoid gates from
(x_t, h_{t-1}): the forget gate f decides how much of the old cell state to keep, the
input gate i how much of the new candidate g = tanh(...) to write, and the output gate o
how much of tanh(c_t) to expose as h_t. Along c the Jacobian is just f, so when the
network learns f ~ 1 the gradient passes through many steps undiminished.

`gru` (flax `GRUCell`): no separate cell state. The reset gate r chooses how much of
h_{t-1} feeds the candidate n = tanh(W x_t + r * (U h_{t-1} + b)); the update gate z
interpolates h_t = (1 - z) * n + z * h_{t-1}, so z ~ 1 copies the state forward (the
same additive path as the LSTM's forget gate, with one gate fewer and no output gate).
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdl.errors import UserError
from jaxdl.nn.precision import layer_dtypes

CELLS = ("rnn", "lstm", "gru")
Carry = Any  # per layer: h for rnn and gru, (c, h) for lstm


def make_cell(kind: str, hidden_dim: int, **kwargs) -> nn.RNNCellBase:
    """The flax cell for `kind`: rnn (SimpleCell, tanh), lstm (OptimizedLSTMCell) or gru."""
    if kind == "rnn":
        return nn.SimpleCell(hidden_dim, activation_fn=jnp.tanh, **kwargs)
    if kind == "lstm":
        return nn.OptimizedLSTMCell(hidden_dim, **kwargs)
    if kind == "gru":
        return nn.GRUCell(hidden_dim, **kwargs)
    raise UserError(f"unknown cell {kind!r}; choose one of {', '.join(CELLS)} (--config.cell)")


class RecurrentLM(nn.Module):
    """tokens (batch, time) int -> logits (batch, time, vocab_size).

    `__call__(tokens, train=False, carry=None, return_carry=False)`: `carry` is a tuple of
    one state per layer (None: zeros); with `return_carry=True` it returns
    `(logits, carry)`, the state after the last token, ready for the next call.
    Dropout (rate `dropout`) acts on the embeddings and on each layer's output.
    """

    cell: str
    vocab_size: int
    embed_dim: int = 64
    hidden_dim: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    unroll: int = 1  # time steps per scan iteration (a speed knob; same numbers)
    dtype: Any = jnp.float32  # compute dtype (jaxdl.nn.precision)
    param_dtype: Any = jnp.float32

    def setup(self):
        if self.num_layers < 1:
            raise UserError(f"num_layers must be >= 1, got {self.num_layers}")
        dt = layer_dtypes(self)
        self.embedding = nn.Embed(self.vocab_size, self.embed_dim, **dt)
        # The cells stay float32 whatever `dtype`: their state is carried through every
        # time step, where bfloat16 rounding would compound (embedding and head use `dtype`).
        self.layers = [nn.RNN(make_cell(self.cell, self.hidden_dim,
                                        param_dtype=self.param_dtype), unroll=self.unroll)
                       for _ in range(self.num_layers)]
        self.drop = nn.Dropout(self.dropout)
        self.head = nn.Dense(self.vocab_size, **dt)

    def __call__(self, tokens: jax.Array, *, train: bool = False, carry: Sequence | None = None,
                 return_carry: bool = False):
        if not jnp.issubdtype(tokens.dtype, jnp.integer) or tokens.ndim != 2:
            raise UserError(f"RecurrentLM takes integer token ids of shape (batch, time), got "
                            f"{tokens.dtype} {tuple(tokens.shape)}; encode text with a vocabulary")
        return self.from_embeddings(self.embed(tokens), train=train, carry=carry,
                                    return_carry=return_carry)

    def embed(self, tokens: jax.Array) -> jax.Array:
        return self.embedding(tokens)  # (batch, time, embed_dim)

    def from_embeddings(self, x: jax.Array, *, train: bool = False,
                        carry: Sequence | None = None, return_carry: bool = False):
        """The model from the embedded inputs x (batch, time, embed_dim) on."""
        if carry is not None and len(carry) != self.num_layers:
            raise UserError(f"carry has {len(carry)} layer states; the model has "
                            f"{self.num_layers} layers")
        x = self.drop(x, deterministic=not train).astype(jnp.float32)
        new_carry = []
        for i, layer in enumerate(self.layers):
            c, x = layer(x, initial_carry=None if carry is None else carry[i],
                         return_carry=True)  # x: (batch, time, hidden_dim)
            new_carry.append(c)
            x = self.drop(x, deterministic=not train)
        logits = self.head(x)  # (batch, time, vocab_size)
        return (logits, tuple(new_carry)) if return_carry else logits


def param_count(cell: str, vocab_size: int, embed_dim: int, hidden_dim: int,
                num_layers: int = 1) -> int:
    """RecurrentLM's parameter count, without building it (flax's cells' bias layout)."""
    h, total = hidden_dim, vocab_size * embed_dim + hidden_dim * vocab_size + vocab_size
    for layer in range(num_layers):
        d = embed_dim if layer == 0 else h
        if cell == "rnn":
            total += d * h + h * h + h
        elif cell == "lstm":
            total += 4 * (d * h + h * h + h)
        elif cell == "gru":
            total += 3 * (d * h + h) + 3 * h * h + h
        else:
            make_cell(cell, h)  # raises the unknown-cell error
    return total


def hidden_for_budget(cell: str, budget: int, vocab_size: int, embed_dim: int,
                      num_layers: int = 1) -> int:
    """The hidden size whose parameter count is closest to `budget`."""
    return min(range(1, 4097),
               key=lambda h: abs(param_count(cell, vocab_size, embed_dim, h, num_layers) - budget))
