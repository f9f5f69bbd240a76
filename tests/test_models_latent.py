"""Models for irregular time series: the batch helpers against plain loops, the GRU encoder against a
hand-written per-series loop, the latent ODE against per-series solves, the RNN baseline against its
recurrence; shapes, gradients (autograd against finite differences in float64) and bad input."""
from __future__ import annotations

import pytest
import torch

from nodecourse import odeint
from nodecourse.data import irregular_time_series
from nodecourse.models.latent import (GRUEncoder, LatentODE, RNNBaseline, masked_mse, pad_batch, time_gaps,
                                      union_times)

from helpers import assert_directional_derivatives


def _ragged(lengths=(5, 2, 7), dim=2, dtype=torch.float32, seed=0):
    """A list of series of the given lengths: sorted positive times [n] and values [n, dim]."""
    g = torch.Generator().manual_seed(seed)
    times = [torch.sort(torch.rand(n, generator=g, dtype=torch.float64) * 5).values.to(dtype) + 0.01
             for n in lengths]
    values = [torch.randn(n, dim, generator=g, dtype=torch.float64).to(dtype) for n in lengths]
    return times, values


def _scattered_mask_batch(seed=0):
    """A batch whose real entries are NOT left-aligned (holes anywhere), with garbage in the holes."""
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(3, 8, generator=g, dtype=torch.float64) * 4, dim=1).values + 0.05
    values = torch.randn(3, 8, 2, generator=g, dtype=torch.float64)
    mask = torch.rand(3, 8, generator=g) < 0.6
    mask[:, 0] = True
    times = times.masked_fill(~mask, -7.0)            # garbage, even unsorted, in the holes
    values = values.masked_fill(~mask.unsqueeze(-1), float("nan"))
    return times, values, mask


# --------------------------------------------------------------------------------------------------
# batch helpers
# --------------------------------------------------------------------------------------------------


def test_pad_batch_left_aligns_series_and_marks_them():
    times, values = _ragged((5, 2, 7), dim=3)
    t, v, m = pad_batch(times, values)
    assert t.shape == (3, 7) and v.shape == (3, 7, 3) and m.dtype == torch.bool
    for i, n in enumerate((5, 2, 7)):
        assert torch.equal(t[i, :n], times[i]) and torch.equal(v[i, :n], values[i])
        assert m[i, :n].all() and not m[i, n:].any()
        assert (t[i, n:] == 0).all() and (v[i, n:] == 0).all()


def test_pad_batch_errors():
    times, values = _ragged((3, 4))
    with pytest.raises(ValueError, match="one times tensor per values"):
        pad_batch(times, values[:1])
    with pytest.raises(ValueError, match="at least one series"):
        pad_batch([], [])
    with pytest.raises(ValueError, match="same n"):
        pad_batch([times[0], times[1]], [values[0], values[0]])
    with pytest.raises(ValueError, match="channels"):
        pad_batch(times, [values[0], torch.zeros(4, 5)])
    with pytest.raises(TypeError, match="must be tensors"):
        pad_batch([[0.1, 0.2]], [torch.zeros(2, 2)])


def test_time_gaps_match_a_loop_over_real_entries():
    times, _, mask = _scattered_mask_batch()
    gaps = time_gaps(times, mask)
    for b in range(times.shape[0]):
        previous = 0.0
        for k in range(times.shape[1]):
            if mask[b, k]:
                assert gaps[b, k].item() == pytest.approx(times[b, k].item() - previous, abs=1e-12)
                previous = times[b, k].item()
            else:
                assert gaps[b, k] == 0


def test_time_gaps_without_mask_are_differences_from_zero():
    t = torch.tensor([[0.5, 1.0, 2.5], [0.0, 0.1, 0.3]])
    expected = torch.tensor([[0.5, 0.5, 1.5], [0.0, 0.1, 0.2]])
    torch.testing.assert_close(time_gaps(t), expected)


def test_time_gaps_errors():
    with pytest.raises(ValueError, match="sorted"):
        time_gaps(torch.tensor([[1.0, 0.5]]))
    with pytest.raises(ValueError, match=">= 0"):
        time_gaps(torch.tensor([[-1.0, 0.5]]))
    with pytest.raises(ValueError, match=r"\[batch, n_points\]"):
        time_gaps(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="bool tensor shaped like it"):
        time_gaps(torch.tensor([[1.0, 2.0]]), torch.tensor([[1, 1]]))


def test_union_times_is_sorted_unique_with_t0_and_indexes_back():
    times, _, mask = _scattered_mask_batch(seed=1)
    times[1], mask[1] = times[0], mask[0]  # two series share all their times: each is listed once
    grid, index = union_times(times, mask)
    expected = sorted({0.0} | set(times[mask].tolist()))
    assert grid.tolist() == expected
    assert torch.equal(grid[index][mask], times[mask])
    assert (index[~mask] == 0).all()


def test_union_times_with_another_t0_and_errors():
    t = torch.tensor([[1.0, 2.0], [1.5, 2.0]])
    grid, index = union_times(t, t0=0.5)
    assert grid.tolist() == [0.5, 1.0, 1.5, 2.0]
    assert index.tolist() == [[1, 3], [2, 3]]
    grid, _ = union_times(t, t0=1.0)  # t0 already a query time: listed once
    assert grid.tolist() == [1.0, 1.5, 2.0]
    with pytest.raises(ValueError, match=">= t0"):
        union_times(t, t0=1.2)


def test_masked_mse_equals_the_mse_of_the_real_entries_and_ignores_nan_padding():
    times, values = _ragged((4, 1, 6), dim=3, dtype=torch.float64)
    _, target, mask = pad_batch(times, values)
    target = target.masked_fill(~mask.unsqueeze(-1), float("nan"))
    pred = torch.randn(target.shape, dtype=torch.float64, requires_grad=True)
    loss = masked_mse(pred, target, mask)
    real_pred = torch.cat([pred[i, : len(t)] for i, t in enumerate(times)])
    expected = ((real_pred - torch.cat(values)) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[~mask] == 0).all()


def test_masked_mse_errors():
    x = torch.zeros(2, 3, 2)
    with pytest.raises(ValueError, match="nothing to average"):
        masked_mse(x, x, torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        masked_mse(x, x, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\[B, N, D\]"):
        masked_mse(x, x[:, :2], torch.ones(2, 3, dtype=torch.bool))


# --------------------------------------------------------------------------------------------------
# the GRU encoder
# --------------------------------------------------------------------------------------------------


def _encoder_by_hand(encoder: GRUEncoder, times, values, mask) -> torch.Tensor:
    """Each series on its own: its real entries only, gaps from 0, read from the last to the first."""
    outputs = []
    for b in range(times.shape[0]):
        t, x = times[b][mask[b]], values[b][mask[b]]
        gaps = torch.diff(t, prepend=torch.zeros(1, dtype=t.dtype))
        h = torch.zeros(1, encoder.hidden_size, dtype=values.dtype)
        for k in reversed(range(t.shape[0])):
            h = encoder.cell(torch.cat([x[k], gaps[k : k + 1]]).unsqueeze(0), h)
        outputs.append(encoder.out(h)[0])
    return torch.stack(outputs)


def test_gru_encoder_shapes_and_equals_a_per_series_backward_loop():
    torch.manual_seed(0)
    encoder = GRUEncoder(input_size=2, hidden_size=6, output_size=3).double()
    times, values, mask = _scattered_mask_batch()
    z0 = encoder(times, values, mask)
    assert z0.shape == (3, 3) and torch.isfinite(z0).all()
    torch.testing.assert_close(z0, _encoder_by_hand(encoder, times, values, mask), rtol=1e-12, atol=1e-12)


def test_gru_encoder_uses_the_gaps_and_ignores_padding():
    torch.manual_seed(1)
    encoder = GRUEncoder(2, 8, 4)
    data = irregular_time_series(n_series=4, n_points=10, seed=2)
    z = encoder(data.times, data.values)
    stretched = encoder(data.times * 1.5, data.values)       # same values, other gaps
    assert (stretched - z).abs().max() > 1e-3
    pad_t = torch.cat([data.times, torch.full((4, 3), 99.0)], 1)
    pad_v = torch.cat([data.values, torch.full((4, 3, 2), float("nan"))], 1)
    pad_m = torch.cat([torch.ones(4, 10, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.bool)], 1)
    assert torch.equal(encoder(pad_t, pad_v, pad_m), z)


def test_gru_encoder_gradients_match_finite_differences():
    torch.manual_seed(2)
    encoder = GRUEncoder(2, 4, 3).double()
    times, values, mask = _scattered_mask_batch(seed=3)
    values = values.nan_to_num(0.0).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: encoder(times, v, mask), (values,))
    t = times.masked_fill(~mask, 0.0).requires_grad_(True)  # through the gaps, too
    assert torch.autograd.gradcheck(lambda s: encoder(s, values.detach(), mask), (t,))


def test_gru_encoder_errors():
    encoder = GRUEncoder(2, 4, 3)
    with pytest.raises(ValueError, match=r"obs_values must be \[batch, n_points, 2\]"):
        encoder(torch.rand(2, 5), torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match="positive integer"):
        GRUEncoder(0, 4, 3)


# --------------------------------------------------------------------------------------------------
# the latent ODE
# --------------------------------------------------------------------------------------------------


def _small_latent_ode(method="dopri5", **kwargs) -> LatentODE:
    torch.manual_seed(3)
    return LatentODE(input_size=2, state_size=3, encoder_hidden_size=5, hidden_size=7, method=method, **kwargs).double()


def _toy_batch(n_series=3, n_points=6, seed=4):
    data = irregular_time_series(n_series=n_series, n_points=n_points, t_max=4.0, seed=seed, dtype=torch.float64)
    return data.times, data.values


def test_latent_ode_shapes_and_decodes_z0_at_time_zero():
    model = _small_latent_ode(decoder_hidden_size=4)
    times, values = _toy_batch()
    query = torch.tensor([[0.0, 0.5, 3.0, 5.0]], dtype=torch.float64).expand(3, -1)
    out = model(times, values, None, query)
    assert out.shape == (3, 4, 2)
    z0 = model.encode(times, values)
    torch.testing.assert_close(out[:, 0], model.decoder(z0))
    assert model.nfe > 0


def test_latent_ode_equals_one_solve_per_series_at_its_own_times():
    model = _small_latent_ode(rtol=1e-10, atol=1e-12)
    times, values = _toy_batch()
    query, _, qmask = pad_batch([times[0, :4] + 0.3, times[1] * 1.2, times[2, :2]],
                                [torch.zeros(4, 1), torch.zeros(6, 1), torch.zeros(2, 1)])
    query = query.double()
    out = model(times, values, None, query, qmask)
    z0 = model.encode(times, values)
    for b in range(3):
        t_b = torch.cat([torch.zeros(1, dtype=torch.float64), query[b][qmask[b]]])
        own = model.decoder(odeint(model.dynamics, z0[b], t_b, rtol=1e-10, atol=1e-12)[1:])
        torch.testing.assert_close(out[b][qmask[b]], own, rtol=0, atol=1e-8)


def test_latent_ode_predictions_do_not_depend_on_query_order_or_on_other_queries():
    model = _small_latent_ode()
    times, values = _toy_batch()
    g = torch.Generator().manual_seed(5)
    query = torch.rand(3, 9, generator=g, dtype=torch.float64) * 6
    out = model(times, values, None, query)
    perm = torch.randperm(9, generator=g)
    torch.testing.assert_close(model(times, values, None, query[:, perm]), out[:, perm], rtol=0, atol=1e-12)
    alone = model(times, values, None, query[:, :1])     # the same time asked on its own
    torch.testing.assert_close(alone[:, 0], out[:, 0], rtol=0, atol=1e-4)  # equal to the solver's tolerance


def test_latent_ode_is_continuous_in_the_query_time():
    model = _small_latent_ode()
    times, values = _toy_batch()
    query = torch.tensor([[1.0, 2.5, 4.0]], dtype=torch.float64).expand(3, -1)
    out = model(times, values, None, query)
    nudged = model(times, values, None, query + 1e-7)
    assert (nudged - out).abs().max() < 1e-5


def test_latent_ode_gradients_match_finite_differences():
    model = _small_latent_ode(method="rk4", options={"step_size": 0.5})
    times, values = _toy_batch(n_series=2, n_points=4)
    query = torch.tensor([[0.7, 1.9, 3.3], [0.2, 2.0, 4.5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: model(times, v, None, query), (values.clone().requires_grad_(),))
    assert_directional_derivatives(model, lambda: model(times, values, None, query).square().sum(), n_directions=1)


def test_latent_ode_checkpoint_gradient_equals_backprop_in_one_forward_of_work():
    """Many query times: the replayed steps give backprop's gradient at about the forward's evaluations,
    where the reverse solve restarts at every time of the union grid."""
    times, values = _toy_batch(n_series=4, n_points=6)
    query = torch.rand(4, 12, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 5
    grads, backward_nfe = {}, {}
    for setting in (False, "checkpoint", True):
        model = _small_latent_ode(adjoint=setting)
        loss = model(times, values, None, query).square().sum()
        forward_nfe, before = model.nfe, model.dynamics.nfe
        grads[setting] = torch.autograd.grad(loss, list(model.parameters()))
        backward_nfe[setting] = model.dynamics.nfe - before
    for a, b in zip(grads["checkpoint"], grads[False]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert 0 < backward_nfe["checkpoint"] <= 7 / 6 * forward_nfe < backward_nfe[True]
    assert backward_nfe[False] == 0
    with pytest.raises(ValueError, match="adjoint must be False"):
        LatentODE(adjoint="replay")
    with pytest.raises(ValueError, match="fixed steps"):
        LatentODE(method="rk4", options={"step_size": 0.1}, adjoint="checkpoint")


def test_latent_ode_errors():
    model = _small_latent_ode()
    times, values = _toy_batch()
    with pytest.raises(ValueError, match=r"z0 \[B, 3\]"):
        model.latent_path(torch.zeros(3, 2, dtype=torch.float64), times)
    with pytest.raises(ValueError, match=r"query_times|floating tensor"):
        model(times, values, None, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="positive integer"):
        LatentODE(state_size=0)


# --------------------------------------------------------------------------------------------------
# the RNN baseline
# --------------------------------------------------------------------------------------------------


def _small_rnn() -> RNNBaseline:
    torch.manual_seed(6)
    return RNNBaseline(input_size=2, state_size=4, encoder_hidden_size=5, decoder_hidden_size=3).double()


def test_rnn_baseline_shapes_and_equals_its_recurrence():
    model = _small_rnn()
    times, values = _toy_batch()
    query, _, qmask = pad_batch([torch.tensor([0.5, 1.0, 3.0]), torch.tensor([2.0]), torch.tensor([0.1, 0.2])],
                                [torch.zeros(3, 1), torch.zeros(1, 1), torch.zeros(2, 1)])
    query = query.double()
    out = model(times, values, None, query, qmask)
    assert out.shape == (3, 3, 2)
    h0 = model.encoder(times, values)
    for b in range(3):
        h, previous = h0[b : b + 1], 0.0
        for m in range(int(qmask[b].sum())):
            gap = torch.tensor([[query[b, m].item() - previous]], dtype=torch.float64)
            h = model.cell(gap, h)
            previous = query[b, m].item()
            torch.testing.assert_close(out[b, m], model.decoder(h)[0], rtol=1e-12, atol=1e-12)


def test_rnn_baseline_depends_on_the_query_grid():
    """The defining difference from the ODE: the answer at t = 2 depends on the steps that led there."""
    model = _small_rnn()
    times, values = _toy_batch()
    coarse = torch.tensor([[1.0, 2.0]], dtype=torch.float64).expand(3, -1)
    fine = torch.tensor([[0.5, 1.0, 1.5, 2.0]], dtype=torch.float64).expand(3, -1)
    gap = (model(times, values, None, coarse)[:, -1] - model(times, values, None, fine)[:, -1]).abs().max()
    assert gap > 1e-4


def test_rnn_baseline_gradients_match_finite_differences():
    model = _small_rnn()
    times, values = _toy_batch(n_series=2, n_points=4)
    query = torch.tensor([[0.7, 1.9, 3.3], [0.2, 2.0, 4.5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: model(times, v, None, query), (values.clone().requires_grad_(),))
    assert_directional_derivatives(model, lambda: model(times, values, None, query).square().sum(), n_directions=1)


def test_rnn_baseline_errors():
    model = _small_rnn()
    times, values = _toy_batch()
    with pytest.raises(ValueError, match="sorted"):
        model(times, values, None, torch.tensor([[2.0, 1.0]] * 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="series"):
        model(times, values, None, torch.tensor([[1.0, 2.0]] * 2, dtype=torch.float64))


