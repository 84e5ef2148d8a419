"""RecurrentLM: shapes, parameter counts, one scan for any length, scan == carried single steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl.errors import UserError
from jaxdl.nn import count_params
from jaxdl.nn.recurrent import (
    CELLS,
    RecurrentLM,
    hidden_for_budget,
    make_cell,
    param_count,
)

V, E, H = 11, 8, 12


def _model(cell, layers=1, **kw):
    return RecurrentLM(cell=cell, vocab_size=V, embed_dim=E, hidden_dim=H, num_layers=layers,
                       **kw)


def _tokens(b, t, seed=0):
    return jax.random.randint(jax.random.PRNGKey(seed), (b, t), 0, V, jnp.int32)


def test_cells_are_flax_cells():
    assert isinstance(make_cell("rnn", 4), nn.SimpleCell)
    assert isinstance(make_cell("lstm", 4), nn.OptimizedLSTMCell)
    assert isinstance(make_cell("gru", 4), nn.GRUCell)


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_over_batch_and_time_and_carry(cell):
    model = _model(cell, layers=2)
    params = model.init(jax.random.PRNGKey(0), _tokens(1, 3))["params"]
    for b, t in [(1, 1), (3, 33)]:
        logits, carry = model.apply({"params": params}, _tokens(b, t), return_carry=True)
        assert logits.shape == (b, t, V) and logits.dtype == jnp.float32
        assert len(carry) == 2
        for layer in carry:  # lstm: (c, h); rnn, gru: h
            for leaf in jax.tree.leaves(layer):
                assert leaf.shape == (b, H)
        assert len(jax.tree.leaves(carry[0])) == (2 if cell == "lstm" else 1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_param_count_formula_matches_flax(cell, layers):
    params = _model(cell, layers).init(jax.random.PRNGKey(0), _tokens(1, 2))["params"]
    assert count_params(params) == param_count(cell, V, E, H, layers)


def test_same_budget_hidden_sizes():
    sizes = {c: hidden_for_budget(c, 350_000, 65, 64) for c in CELLS}
    assert sizes == {"rnn": 527, "lstm": 256, "gru": 299}
    counts = [param_count(c, 65, 64, h) for c, h in sizes.items()]
    assert counts == [350_464, 349_569, 350_467]
    assert max(counts) / min(counts) < 1.01


@pytest.mark.parametrize("cell", CELLS)
def test_scan_over_time_equals_single_steps_with_carried_state(cell):
    model = _model(cell, layers=2)
    tokens = _tokens(3, 9, seed=1)
    params = model.init(jax.random.PRNGKey(2), tokens)["params"]
    full = model.apply({"params": params}, tokens)
    step = jax.jit(lambda c, tok: model.apply({"params": params}, tok, carry=c,
                                              return_carry=True))
    carry, outs = None, []
    for t in range(tokens.shape[1]):
        if carry is None:  # the first step from the default (zero) state
            out, carry = model.apply({"params": params}, tokens[:, :1], return_carry=True)
        else:
            out, carry = step(carry, tokens[:, t:t + 1])
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, axis=1), full, atol=1e-5, rtol=1e-5)


def test_one_scan_whatever_the_length():
    model = _model("lstm")
    params = model.init(jax.random.PRNGKey(0), _tokens(1, 2))["params"]

    def n_eqns(t):
        jaxpr = jax.make_jaxpr(lambda x: model.apply({"params": params}, x))(_tokens(2, t))
        return len(jaxpr.eqns), str(jaxpr).count("scan[")

    assert n_eqns(5) == n_eqns(500)  # traced once: the program does not grow with time
    assert n_eqns(5)[1] == 1


def test_dropout_only_in_training():
    model = _model("rnn", layers=2, dropout=0.5)
    tokens = _tokens(2, 6)
    params = model.init(jax.random.PRNGKey(0), tokens)["params"]
    apply = jax.jit(lambda train, seed: model.apply(
        {"params": params}, tokens, train=train, rngs={"dropout": jax.random.PRNGKey(seed)}),
        static_argnums=0)
    np.testing.assert_array_equal(apply(False, 0), apply(False, 1))
    assert not np.allclose(apply(True, 0), apply(True, 1))


def test_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="unknown cell 'transformer'.*--config.cell"):
        _model("transformer").init(jax.random.PRNGKey(0), _tokens(1, 2))
    model = _model("rnn")
    with pytest.raises(UserError, match="integer token ids of shape \\(batch, time\\)"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.float32))
    with pytest.raises(UserError, match="integer token ids"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((4,), jnp.int32))
    with pytest.raises(UserError, match="unknown cell"):
        param_count("mlp", V, E, H)
