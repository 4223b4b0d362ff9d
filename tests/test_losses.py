"""The training losses against hand-computed values."""

import math

import torch

from babyllama.data.token_arrays import IGNORE_INDEX
from babyllama.losses import cross_entropy, distillation_loss, kl_sum
from babyllama.teachers import ensemble_logits


def _kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def _softmax(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


S = [[[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], [[0.0, 2.0, 0.0], [3.0, 0.0, 0.0]]]
T = [[[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]], [[2.0, 0.0, 0.0], [0.0, 0.0, 9.0]]]
LABELS = [[0, 1], [1, IGNORE_INDEX]]  # the last position is padding


def test_cross_entropy_ignores_padding():
    ce = cross_entropy(torch.tensor(S), None, torch.tensor(LABELS)).ce.item()
    expected = -(math.log(_softmax(S[0][0])[0]) + math.log(_softmax(S[0][1])[1]) + math.log(_softmax(S[1][0])[1])) / 3
    assert math.isclose(ce, expected, rel_tol=1e-6)


def test_distillation_both_reductions_by_hand():
    kept = [(0, 0), (0, 1), (1, 0)]
    for temp in (1.0, 2.0):
        kl_total = sum(_kl(_softmax([x / temp for x in T[b][t]]), _softmax([x / temp for x in S[b][t]]))
                       for b, t in kept)
        ce = cross_entropy(torch.tensor(S), None, torch.tensor(LABELS)).ce.item()
        per_token = distillation_loss(torch.tensor(S), torch.tensor(T), torch.tensor(LABELS), alpha=0.3,
                                      temperature=temp, reduction="per_token")
        reference = distillation_loss(torch.tensor(S), torch.tensor(T), torch.tensor(LABELS), alpha=0.3,
                                      temperature=temp, reduction="reference")
        assert math.isclose(per_token.kd.item(), temp ** 2 * kl_total / 3, rel_tol=1e-5)
        assert math.isclose(reference.kd.item(), temp ** 2 * kl_total / 2, rel_tol=1e-5)  # batch size 2
        assert math.isclose(per_token.loss.item(), 0.3 * ce + 0.7 * per_token.kd.item(), rel_tol=1e-6)


def test_chunked_kl_matches_unchunked():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 17, 50, generator=g), torch.randn(3, 17, 50, generator=g)
    labels = torch.randint(0, 50, (3, 17), generator=g)
    labels[2, 10:] = IGNORE_INDEX
    full = kl_sum(s, t, labels, 1.5, chunk_tokens=10_000)
    for chunk in (1, 7, 16):
        assert torch.allclose(kl_sum(s, t, labels, 1.5, chunk_tokens=chunk), full, rtol=1e-5)
    reference = torch.nn.functional.kl_div(torch.log_softmax(s / 1.5, -1), torch.softmax(t / 1.5, -1),
                                           reduction="none").sum(-1)
    assert torch.allclose(full, (reference * (labels != IGNORE_INDEX)).sum(), rtol=1e-5)


def test_distillation_gradient_flows_to_student_only():
    s = torch.randn(2, 4, 10, requires_grad=True)
    t = torch.randn(2, 4, 10)
    parts = distillation_loss(s, t, torch.randint(0, 10, (2, 4)))
    parts.loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


class _Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.value = logits

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.value.clone()})()


def test_ensemble_is_mean_of_teacher_logits():
    a, b, c = torch.randn(2, 3, 5), torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    mean = ensemble_logits([_Fixed(a), _Fixed(b), _Fixed(c)], torch.zeros(2, 3, dtype=torch.long))
    assert torch.allclose(mean, (a + b + c) / 3, atol=1e-6)


# ---- the chunked training loss (issue 6): same values and gradients as the plain loss above

from babyllama.losses import DenseTargets, SparseTargets, chunked_lm_loss  # noqa: E402


def _close(a, b, tol=1e-5):
    """Equal to ``tol`` relative to the largest magnitude (fp32 sums in another order differ by ~1e-7)."""
    return (a - b).abs().max() <= tol * b.abs().max().clamp(min=1e-12)


def _problem(n_seq=3, seq=11, hidden=16, vocab=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n_seq * seq, hidden, generator=g, requires_grad=True)
    w = (0.5 * torch.randn(vocab, hidden, generator=g)).requires_grad_()
    teacher = 3 * torch.randn(n_seq * seq, vocab, generator=g)
    labels = torch.randint(0, vocab, (n_seq * seq,), generator=g)
    labels[-5:] = IGNORE_INDEX
    return h, w, teacher, labels


def test_chunked_loss_matches_plain_loss_values_and_gradients():
    h, w, teacher, labels = _problem()
    shape = (3, 11, -1)
    for temp in (1.0, 2.0):
        for reduction in ("per_token", "reference"):
            plain = distillation_loss((h @ w.t()).view(shape), teacher.view(shape), labels.view(3, 11), alpha=0.3,
                                      temperature=temp, reduction=reduction)
            want = torch.autograd.grad(plain.loss, (h, w))
            for rows in (1, 7, 1000):
                got = chunked_lm_loss(h, w, labels, DenseTargets(lambda a, b: teacher[a:b].clone()), alpha=0.3,
                                      temperature=temp, reduction=reduction, batch_size=3, rows=rows)
                for a, b in ((got.loss, plain.loss), (got.ce, plain.ce), (got.kd, plain.kd)):
                    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (temp, reduction, rows, a, b)
                for a, b in zip(torch.autograd.grad(got.loss, (h, w)), want):
                    assert _close(a, b), (temp, reduction, rows)


def test_chunked_cross_entropy_and_logits_input_match_plain():
    h, w, teacher, labels = _problem(seed=1)
    logits = (h @ w.t()).detach().requires_grad_()
    plain = cross_entropy(logits.view(3, 11, -1), None, labels.view(3, 11))
    got = chunked_lm_loss(h, w, labels, rows=5)
    assert got.kd is None and torch.allclose(got.loss, plain.loss, rtol=1e-6)
    (g_logits,) = torch.autograd.grad(plain.loss, logits)
    assert _close(torch.autograd.grad(got.loss, h)[0], g_logits @ w.detach())
    # logits passed directly (the sharded-model path): same loss and gradient, input left intact
    before = logits.detach().clone()
    direct = chunked_lm_loss(logits, None, labels, DenseTargets(lambda a, b: teacher[a:b].clone()), rows=4)
    reference = distillation_loss(logits.view(3, 11, -1), teacher.view(3, 11, -1), labels.view(3, 11))
    assert torch.allclose(direct.loss, reference.loss, rtol=1e-6)
    assert _close(torch.autograd.grad(direct.loss, logits)[0], torch.autograd.grad(reference.loss, logits)[0])
    assert torch.equal(logits.detach(), before)


def test_sparse_targets_with_exact_frequencies_equal_dense_targets():
    """Draws whose frequencies equal p give exactly the dense loss and gradient (the estimator is right)."""
    vocab, hidden = 6, 5
    p = torch.tensor([0.5, 0.25, 0.125, 0.125, 0.0, 0.0])
    draws = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])  # k = 8 draws with frequencies exactly p
    g = torch.Generator().manual_seed(2)
    h = torch.randn(4, hidden, generator=g, requires_grad=True)
    w = torch.randn(vocab, hidden, generator=g, requires_grad=True)
    labels = torch.tensor([1, 2, IGNORE_INDEX, 0])
    teacher_logits = torch.log(p.clamp(min=1e-30)).expand(4, vocab)
    logp = torch.log(p)[draws]
    for temp in (1.0, 3.0):  # draws are from the teacher distribution at temperature `temp`
        dense = chunked_lm_loss(h, w, labels, DenseTargets(lambda a, b: temp * teacher_logits[a:b].clone()),
                                alpha=0.4, temperature=temp, rows=3)
        sparse = chunked_lm_loss(h, w, labels, SparseTargets(draws.expand(4, -1), logp.expand(4, -1)),
                                 alpha=0.4, temperature=temp, rows=3)
        assert torch.allclose(sparse.kd, dense.kd, rtol=1e-5) and torch.allclose(sparse.loss, dense.loss, rtol=1e-5)
        for a, b in zip(torch.autograd.grad(sparse.loss, (h, w)), torch.autograd.grad(dense.loss, (h, w))):
            assert _close(a, b)


def test_ensemble_targets_are_the_mean_of_teacher_logits_by_chunk():
    from babyllama.config import ModelConfig
    from babyllama.model import build_model, llama_config
    from babyllama.teachers import ensemble_targets

    config = llama_config(ModelConfig(preset="tiny"), 90, 0, 1, 2)
    teachers = [build_model(config, seed).eval().requires_grad_(False) for seed in (1, 2, 3)]
    ids = torch.randint(0, 90, (2, 9))
    full = ensemble_logits(teachers, ids).flatten(0, 1)
    targets = ensemble_targets(teachers, ids)
    assert torch.allclose(targets.logits(0, 18), full, atol=1e-6)
    assert torch.allclose(targets.logits(5, 11), full[5:11], atol=1e-6)
