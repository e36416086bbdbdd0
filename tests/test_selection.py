import math

import pytest
import torch

from ssl_mix.selection import STRATEGIES, acquisition_scores, select_top

PROBS = torch.tensor([[0.98, 0.01, 0.01],   # sure
                      [0.50, 0.49, 0.01],   # torn between two classes
                      [0.34, 0.33, 0.33],   # no idea
                      [0.70, 0.20, 0.10]])


def test_scores_equal_hand_computed_values():
    assert torch.allclose(acquisition_scores(PROBS, "least-confidence"), torch.tensor([0.02, 0.50, 0.66, 0.30]))
    assert torch.allclose(acquisition_scores(PROBS, "margin"), -torch.tensor([0.97, 0.01, 0.01, 0.50]))
    entropy = [-sum(p * math.log(p) for p in row) for row in PROBS.tolist()]
    assert torch.allclose(acquisition_scores(PROBS, "entropy"), torch.tensor(entropy))
    # One-hot rows have zero entropy (0 log 0 = 0), not NaN.
    assert acquisition_scores(torch.eye(3), "entropy").abs().max() < 1e-6


def test_each_strategy_ranks_the_uncertain_images_first():
    assert select_top(acquisition_scores(PROBS, "least-confidence"), 2).tolist() == [2, 1]
    # Entropy weighs the whole distribution: the spread-out row 3 outranks row 1, torn between two classes.
    assert select_top(acquisition_scores(PROBS, "entropy"), 2).tolist() == [2, 3]
    assert set(select_top(acquisition_scores(PROBS, "margin"), 2).tolist()) == {1, 2}
    assert 0 not in select_top(acquisition_scores(PROBS, "margin"), 3).tolist()


def test_random_and_ties_are_seeded():
    first = acquisition_scores(PROBS, "random", seed=3)
    assert torch.equal(first, acquisition_scores(PROBS, "random", seed=3))
    assert not torch.equal(first, acquisition_scores(PROBS, "random", seed=4))
    ties = torch.zeros(100)
    picks = {tuple(select_top(ties, 10, seed=s).tolist()) for s in range(5)}
    assert len(picks) == 5 and tuple(select_top(ties, 10, seed=0).tolist()) in picks
    assert select_top(ties, 10, seed=0).tolist() == select_top(ties, 10, seed=0).tolist()


def test_the_budget_is_respected_without_repeats():
    scores = torch.rand(50, generator=torch.Generator().manual_seed(0))
    for budget in (1, 7, 50):
        picked = select_top(scores, budget)
        assert len(picked) == budget == len(set(picked.tolist()))
        assert scores[picked].min() >= scores[torch.tensor(sorted(set(range(50)) - set(picked.tolist())))].max() \
            if budget < 50 else True


def test_balance_spreads_the_picks_over_predicted_classes():
    scores = torch.arange(30, dtype=torch.float32)      # class 2 holds every top score
    classes = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    assert select_top(scores, 6).tolist() == [29, 28, 27, 26, 25, 24]
    balanced = select_top(scores, 7, classes=classes)
    counts = torch.bincount(classes[balanced], minlength=3).tolist()
    assert sorted(counts) == [2, 2, 3] and counts[2] == 3  # the class with the best score gets the extra pick
    assert balanced[:3].tolist() == [29, 28, 27]  # within a class, best first
    # A class with too few images leaves its share to the others.
    few = torch.tensor([0] * 28 + [1] * 2)
    picked = select_top(scores, 12, classes=few)
    assert torch.bincount(few[picked], minlength=2).tolist() == [10, 2] and len(set(picked.tolist())) == 12


@pytest.mark.parametrize("call, match", [
    (lambda: acquisition_scores(PROBS, "confidence"), "strategy must be one of 'margin'.*; got 'confidence'"),
    (lambda: acquisition_scores(PROBS[:, :1], "margin"), "at least 2 classes"),
    (lambda: acquisition_scores(torch.ones(3), "margin"), r"shape \(N, num_classes\)"),
    (lambda: select_top(torch.zeros(4), 5), "between 1 and the pool size 4, got 5; use a larger pool"),
    (lambda: select_top(torch.zeros(4), 0), "between 1 and the pool size 4, got 0"),
    (lambda: select_top(torch.zeros(4), 2, classes=torch.zeros(3)), "one entry per score"),
])
def test_bad_input_is_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_strategies_are_listed_once():
    assert STRATEGIES == ("margin", "entropy", "least-confidence", "random")
