"""The exact answers the sampler study and the oracle judge against (tests/truth.py): the Gaussian-mixture denoiser is
the true posterior mean, and its probability-flow solution lands on the data distribution."""

from __future__ import annotations

import numpy as np
from truth import GaussianMixture, IdealDenoiser, probability_flow, sliced_wasserstein

from tango_rt.runtime.schedulers import make_scheduler


def test_posterior_mean_is_the_conditional_expectation():
    """E[x0 - x0_hat(x_t)] = 0 and E[(x0 - x0_hat) x_t] = 0 (the residual of a conditional mean is orthogonal to
    any function of x_t): Monte Carlo over 200k draws, 5-sigma bounds."""
    mixture = GaussianMixture.random(dim=3, seed=1)
    rng = np.random.default_rng(2)
    x0 = mixture.sample(200_000, rng)
    for alpha in (0.2, 0.7, 0.98):
        sigma = np.sqrt(1 - alpha**2)
        xt = alpha * x0 + sigma * rng.standard_normal(x0.shape)
        residual = x0 - mixture.posterior_mean(xt, alpha, sigma)
        for statistic in (residual, residual * xt, residual * np.tanh(xt)):
            bound = 5 * statistic.std(axis=0) / np.sqrt(len(statistic))
            assert (np.abs(statistic.mean(axis=0)) < bound).all()


def test_probability_flow_maps_noise_onto_the_data():
    mixture = GaussianMixture.random(dim=4, seed=0)
    denoiser = IdealDenoiser(mixture, make_scheduler("ddpm").alphas_cumprod)
    rng = np.random.default_rng(3)
    solved = probability_flow(rng.standard_normal((2000, 4)), 999.0, denoiser, steps=400)
    truth, other = mixture.sample(2000, rng), mixture.sample(2000, rng)
    assert sliced_wasserstein(solved, truth) < 2 * sliced_wasserstein(other, truth)
