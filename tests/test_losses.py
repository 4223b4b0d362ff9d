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
