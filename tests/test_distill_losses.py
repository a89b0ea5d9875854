"""KD loss (Hinton, 003) and HND loss (002 eq. (1)) against hand-computed values; training reduces them."""

import math

import pytest
import torch

from edgesim.studies.distill.data import load_digits_data
from edgesim.studies.distill.hnd import hnd_loss, train_head
from edgesim.studies.distill.kd import kd_loss, train_classifier
from profilers.models.students import build_generic_head


@pytest.fixture(scope="module")
def tiny_data():
    return load_digits_data(side_px=16, channels=3, seed=0, limit=200)


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_kd_loss_equals_hand_computed_value():
    s, t, y, T, a = [1.0, 0.0, -1.0], [0.5, 1.5, -0.5], 1, 2.0, 0.7
    ps, pt = _softmax([x / T for x in s]), _softmax([x / T for x in t])
    kl = sum(q * math.log(q / p) for p, q in zip(ps, pt))
    ce = -math.log(_softmax(s)[y])
    expected = a * T**2 * kl + (1 - a) * ce
    got = kd_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([y]), temperature=T, alpha=a)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_kd_loss_with_alpha_zero_is_cross_entropy_and_batch_mean():
    s = torch.tensor([[2.0, -1.0, 0.3], [0.1, 0.2, 0.3]])
    t = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    y = torch.tensor([0, 2])
    assert float(kd_loss(s, t, y, 3.0, 0.0)) == pytest.approx(float(torch.nn.functional.cross_entropy(s, y)))
    # identical distributions: the soft term vanishes, only (1 - alpha) * CE is left
    assert float(kd_loss(s, s, y, 3.0, 0.5)) == pytest.approx(0.5 * float(torch.nn.functional.cross_entropy(s, y)), abs=1e-6)


def test_teacher_receives_no_gradient():
    teacher = torch.nn.Linear(4, 3)
    student = torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    loss = kd_loss(student(x), teacher(x), y)
    loss.backward()
    assert teacher.weight.grad is None and student.weight.grad is not None


def test_hnd_loss_is_sum_of_squared_errors():
    t = torch.tensor([[[1.0, 2.0]], [[0.0, -1.0]]])
    s = torch.tensor([[[0.0, 2.0]], [[1.0, 1.0]]])
    assert float(hnd_loss(s, t)) == pytest.approx(1 + 0 + 1 + 4)


def test_head_training_reduces_sse_on_a_tiny_case(tiny_data):
    torch.manual_seed(0)
    teacher_head = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU())
    student = build_generic_head((3, 16, 16), (8, 4, 4))
    res = train_head(student, teacher_head, tiny_data, epochs=3, lr=3e-3)
    assert res.val_sse[-1] < res.initial_val_sse
    assert all(p.grad is None for p in teacher_head.parameters())


def test_generic_head_bottleneck_is_near_1_7_percent_of_input():
    head = build_generic_head((3, 32, 32), (128, 4, 4))
    z = head.encode(torch.zeros(1, 3, 32, 32))
    assert tuple(z.shape) == (1, 3, 4, 4)  # 48 / 3072 = 1.56 %
    assert tuple(head(torch.zeros(1, 3, 32, 32)).shape) == (1, 128, 4, 4)


def test_classifier_training_on_tiny_data_learns(tiny_data):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 10))
    res = train_classifier(net, tiny_data, epochs=5, lr=1e-2)
    assert res.test_accuracy > 0.3  # 10 classes: chance is 0.1
