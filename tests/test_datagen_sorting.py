"""Sorting samples into chains, and the bandits that tune SOR's ω along a sequence."""

import numpy as np
import scipy.sparse as sp

from nopx.datagen.bandit import ContextualBandit, Exp3, TsallisINF
from nopx.datagen.sor import SORSolver, sor_sweeps
from nopx.datagen.sorting import greedy_chain, hilbert_order, plan_chains
from nopx.datagen.stencil import diffusion_matrix


def _mean_step(features, order):
    return np.linalg.norm(np.diff(features[order], axis=0), axis=1).mean()


def test_greedy_chain_visits_everything_once_and_shortens_steps():
    features = np.random.default_rng(0).uniform(size=(300, 4))
    order = greedy_chain(features)
    assert sorted(order.tolist()) == list(range(300)) and order[0] == 0
    assert _mean_step(features, order) < 0.4 * _mean_step(features, np.arange(300))


def test_hilbert_order_keeps_neighbours_close():
    points = np.random.default_rng(1).uniform(size=(2000, 3))
    order = hilbert_order(points)
    assert sorted(order.tolist()) == list(range(2000))
    assert _mean_step(points, order) < 0.2 * _mean_step(points, np.arange(2000))


def test_plan_chains_partitions_into_similar_chains():
    features = np.random.default_rng(2).uniform(size=(1000, 4))
    chains = plan_chains(features, length=100)
    assert len(chains) == 10 and all(len(c) == 100 for c in chains)
    assert sorted(i for c in chains for i in c) == list(range(1000))
    within = np.mean([_mean_step(features, c) for c in chains])
    assert within < 0.35 * _mean_step(features, np.arange(1000))
    assert plan_chains(features, 400) == plan_chains(features, 400)  # deterministic
    assert plan_chains(features[:7], 3, sort=False) == [[0, 1, 2], [3, 4], [5, 6]]


def test_bandits_approach_the_best_fixed_arm():
    """Iteration counts of SOR on a sequence, per ω: the total of the learner vs the best fixed ω."""
    rng = np.random.default_rng(3)
    omegas = np.linspace(1.0, 1.9, 10)
    best = 1.75
    rounds = 10000
    # Iterations grow with the distance from the (wobbling) best ω, with noise.
    iterations = 40 + 300 * np.abs(omegas[None, :] - best - 0.03 * np.sin(np.arange(rounds))[:, None]) \
        + rng.uniform(0, 10, (rounds, omegas.size))
    cap = iterations.max()
    best_fixed = iterations.sum(axis=0).min()
    uniform = iterations.mean(axis=1).sum()
    for learner in (TsallisINF(omegas.size, seed=0), Exp3(omegas.size, seed=0, gamma=0.01, eta=0.02)):
        total = 0.0
        for t in range(rounds):
            arm = learner.choose()
            total += iterations[t, arm]
            learner.update(arm, iterations[t, arm] / cap)
        assert total < 1.2 * best_fixed < 0.6 * uniform, (type(learner).__name__, total / best_fixed)


def test_contextual_bandit_learns_an_omega_per_context():
    bandit = ContextualBandit(lambda b: TsallisINF(2, seed=b), low=0.0, high=1.0, bins=2)
    for t in range(600):
        context = t % 2 * 0.9
        arm = bandit.choose(context)
        bandit.update(arm, float(arm != (context > 0.5)))
    assert np.argmax(bandit.bandits[0].probabilities()) == 0
    assert np.argmax(bandit.bandits[1].probabilities()) == 1


def test_sor_engine_learns_a_good_omega():
    A = sp.csr_matrix(diffusion_matrix(np.ones((10, 10))))
    b = np.ones(100)
    sweeps = {w: sor_sweeps(A, b, w, rtol=1e-8, max_sweeps=3000)[1] for w in (1.0, 1.6)}
    assert sweeps[1.6] < 0.5 * sweeps[1.0]
    results = list(SORSolver(omegas=(1.0, 1.3, 1.6), rtol=1e-8, max_sweeps=3000).solve([(A, b)] * 60))
    late = np.mean([stats.iterations for _, stats in results[-20:]])
    assert late < 0.7 * sweeps[1.0] and all(stats.residual <= 1e-8 for _, stats in results)
