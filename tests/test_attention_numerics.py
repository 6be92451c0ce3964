"""The memory-lean inhibitor attention equals a naive float64 implementation of the spec, forward and backward."""

import pytest
import torch

from modeling_inhibidistilbert.modeling_inhibidistilbert import attention_mask_to_allowed, inhibitor_attention_cdist
from modeling_inhibidistilbert.reference import naive_inhibitor, random_case


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("pad", [True, False])
def test_cdist_form_matches_naive_float64_reference(signed, center, pad):
    for seed in range(3):
        q, k, v, gamma, delta, eta, key_mask = random_case(seed=seed, pad=pad)
        expected, expected_zbar = naive_inhibitor(q, k, v, gamma, delta, eta, key_mask, signed, center)
        allowed = None if key_mask is None else key_mask[:, None, None, :]
        out, zbar = inhibitor_attention_cdist(q, k, v, gamma, delta, eta, allowed, signed=signed, center=center)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-9)
        if key_mask is not None:
            expected_zbar = expected_zbar.masked_fill(~allowed, 0.0)
        torch.testing.assert_close(zbar, expected_zbar, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("center", [True, False])
def test_cdist_gradients_match_naive_reference(signed, center):
    q, k, v, gamma, delta, eta, key_mask = random_case(seed=7)
    inputs = [t.clone().requires_grad_() for t in (q, k, v, gamma, delta, eta)]
    allowed = key_mask[:, None, None, :]
    out, _ = inhibitor_attention_cdist(*inputs, allowed, signed=signed, center=center)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref_inputs = [t.clone().requires_grad_() for t in (q, k, v, gamma, delta, eta)]
    ref, _ = naive_inhibitor(*ref_inputs, key_mask, signed, center)
    ref_grads = torch.autograd.grad((ref * weights).sum(), ref_inputs)
    for grad, ref_grad in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("signed", [True, False])
def test_gradcheck_tiny_case(signed):
    q, k, v, gamma, delta, eta, key_mask = random_case(batch=2, heads=2, n=4, d=3, seed=3)
    allowed = key_mask[:, None, None, :]
    inputs = tuple(t.clone().requires_grad_() for t in (q, k, v, gamma, delta, eta))

    def fn(*args):
        return inhibitor_attention_cdist(*args, allowed, signed=signed, center=True)[0]

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_padded_keys_contribute_nothing_whatever_their_values():
    q, k, v, gamma, delta, eta, key_mask = random_case(seed=11)
    allowed = key_mask[:, None, None, :]
    out, _ = inhibitor_attention_cdist(q, k, v, gamma, delta, eta, allowed)
    k2, v2 = k.clone(), v.clone()
    k2[0, :, -2:] = 1e3 * torch.randn_like(k2[0, :, -2:])
    v2[0, :, -2:] = -1e3
    out2, _ = inhibitor_attention_cdist(q, k2, v2, gamma, delta, eta, allowed)
    torch.testing.assert_close(out2[0, :, :-2], out[0, :, :-2], rtol=1e-9, atol=1e-9)
    # and equals attention over the real tokens alone
    real = slice(0, q.shape[2] - 2)
    alone, _ = inhibitor_attention_cdist(q[:1, :, real], k[:1, :, real], v[:1, :, real], gamma, delta, eta)
    torch.testing.assert_close(out[:1, :, real], alone, rtol=1e-9, atol=1e-9)


PADDED = torch.tensor([[True] * 5, [True, True, True, False, False]])


@pytest.mark.parametrize(
    "make_mask",
    [
        lambda m: m.long(),  # tokenizer's 0/1 mask
        lambda m: m,  # boolean
        lambda m: m.float(),  # multiplicative float
        lambda m: (1.0 - m.float()) * torch.finfo(torch.float32).min,  # additive [B, N]
        lambda m: (1.0 - m.float()) * -10000.0,  # the classic extended mask: finite large negatives
        lambda m: (1.0 - m.float()) * -1e9,
        lambda m: torch.zeros(m.shape).masked_fill(~m, float("-inf")),
        lambda m: ((1.0 - m.float()) * -10000.0)[:, None, None, :],  # additive [B, 1, 1, N]
        lambda m: m[:, None, None, :],  # boolean [B, 1, 1, N]
    ],
)
def test_key_padding_mask_forms_normalise_to_the_same_key_mask(make_mask):
    """Before, additive masks with finite negatives above finfo.min / 2 (-10000, -1e9) silently masked nothing."""
    allowed = attention_mask_to_allowed(make_mask(PADDED), 2, 5)
    assert allowed.shape == (2, 1, 1, 5)
    assert torch.equal(allowed[:, 0, 0], PADDED)


@pytest.mark.parametrize(
    "make_mask",
    [
        lambda m: ((1.0 - m.float()) * -10000.0)[:, None, None, :].expand(-1, 1, 5, -1),
        lambda m: m[:, None, None, :].expand(-1, 1, 5, -1),  # boolean 4D, as transformers builds it
        lambda m: m[:, None, :].expand(-1, 5, -1).long(),  # [B, N, N] 0/1
    ],
)
def test_full_masks_are_per_query_masks_decided_by_shape(make_mask):
    """A `[B, (1,) N, N]` mask is a per-query mask by its shape, whatever its values (no data-dependent branch)."""
    allowed = attention_mask_to_allowed(make_mask(PADDED), 2, 5)
    assert allowed.shape == (2, 1, 5, 5)
    assert torch.equal(allowed, PADDED[:, None, None, :].expand(-1, 1, 5, -1))


def test_all_zero_float_mask_is_additive_and_masks_nothing():
    # an additive float mask with nothing masked, as `(1 - mask) * finfo.min` gives for unpadded inputs, is all zeros
    for mask in (torch.zeros(2, 5), torch.zeros(2, 1, 1, 5)):
        assert attention_mask_to_allowed(mask, 2, 5).all()
    assert attention_mask_to_allowed(None, 2, 5) is None
    assert attention_mask_to_allowed(torch.ones(2, 5), 2, 5).all()


def test_wrong_mask_shape_is_a_clear_error():
    for mask in (torch.ones(2, 7), torch.ones(2, 3, 5)):
        with pytest.raises(ValueError, match="does not fit"):
            attention_mask_to_allowed(mask, 2, 5)


def test_full_per_query_mask_matches_naive_reference():
    """A 4D mask that differs per query (e.g. a custom pattern) is honoured exactly as well."""
    q, k, v, gamma, delta, eta, _ = random_case(batch=1, heads=2, n=5, d=4, seed=5, pad=False)
    allowed = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(0)) > 0.4
    allowed[..., 0] = True  # every query sees at least one key
    out, _ = inhibitor_attention_cdist(q, k, v, gamma, delta, eta, allowed)
    for i in range(5):
        keys = allowed[0, 0, i]
        ref, _ = naive_inhibitor(q[:, :, i : i + 1], k[:, :, keys], v[:, :, keys], gamma, delta, eta)
        torch.testing.assert_close(out[:, :, i : i + 1], ref, rtol=1e-9, atol=1e-9)
