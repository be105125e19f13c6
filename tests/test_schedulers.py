"""Numpy samplers against diffusers' own schedulers, and against the fixture's golden steps.

Tolerance (`float32_bound`), from an error analysis rather than one machine's worst case. Both sides compute in
float32 with unit roundoff u = 2^-24 but with different libm / SIMD kernels (sqrt, log, exp, expm1 may differ
by an ulp between torch, numpy, Intel, AMD and ARM). Per step and element:
- the scalar coefficients pass through at most ~8 correctly- or faithfully-rounded operations and the update
  through ~6 more, so a step adds at most OPS_ROUNDINGS * u * M, where M bounds |sample|, |model output| and
  |x0| over the run (taken from the reference trajectory);
- errors already in the sample are not amplified: every update here is a contraction in the sample (for a
  first-order step the x-Jacobian is cos of the angle between the two noise levels; Euler's is
  1 - sigma (sigma - sigma_next) / (sigma^2 + 1) <= 1), so per-step errors add up linearly over the run;
- UniPC additionally forms its b coefficients by cancellation (phi_k(h) = phi_{k-1}(h)/h - 1/k!), which turns
  one ulp of expm1(h) into an absolute error ~u/h^2 in b and ~u |D| / h in the step (B(h) ~ h multiplies it),
  D being the model-output differences it weights.
OPS_ROUNDINGS = 32 is twice the operation count, for faithful (1-ulp) transcendental functions.

Timesteps: integer grids are exact by construction and compared exactly. Fractional ones (Euler's linspace grid,
Karras sigmas mapped back to t) come from float32 sigma tables through log and interpolation: an error of
e = TABLE_ROUNDINGS * u in log(sigma) (a few roundings in the table's sqrt/divide and in log) moves t by
e / |d log(sigma) / dt| over the table segment t lies in, plus one float32 rounding of t itself.
On one AMD EPYC, Karras timesteps came out 1 ulp from diffusers' (89.94244 vs 89.94245) where Intel matched.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tango_rt.runtime.errors import InputError
from tango_rt.runtime.schedulers import SCHEDULER_NAMES, default_scheduler_config, make_scheduler
from tango_rt.runtime.schedulers.config import USER_OPTIONS
from tango_rt.runtime.schedulers.sigmas import vp

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.numerics  # also run with lower instruction sets forced (.ci/run)

U = 2.0**-24
OPS_ROUNDINGS = 32
CONDITIONING_ROUNDINGS = 4
TABLE_ROUNDINGS = 8
STEPS = (10, 20, 25, 50, 100, 200)
SHAPE = (2, 4, 8, 8)


def _reference(name: str, config: dict, options: dict):
    """diffusers' class for our name, built as the name promises: from_config(config) plus the options."""
    classes = {
        "ddpm": diffusers.DDPMScheduler, "ddim": diffusers.DDIMScheduler,
        "dpm++": diffusers.DPMSolverMultistepScheduler, "dpm++sde": diffusers.DPMSolverMultistepScheduler,
        "unipc": diffusers.UniPCMultistepScheduler, "euler": diffusers.EulerDiscreteScheduler,
        "euler-a": diffusers.EulerAncestralDiscreteScheduler,
    }
    forced = {"algorithm_type": "sde-dpmsolver++"} if name == "dpm++sde" else {}
    return classes[name].from_config(config, **options, **forced)


def _hand_noise(name: str, noise: np.ndarray, monkeypatch) -> dict:
    """diffusers draws its own noise: give it ours (variance_noise where the API takes it, else randn_tensor)."""
    if name == "dpm++sde":
        return {"variance_noise": torch.from_numpy(noise)}
    for module in ("scheduling_ddpm", "scheduling_euler_ancestral_discrete"):
        target = f"diffusers.schedulers.{module}.randn_tensor"
        monkeypatch.setattr(target, lambda *a, _n=noise, **k: torch.from_numpy(_n))
    return {}


def float32_bound(ours, magnitude: float, spread: float) -> float:
    """The module docstring's bound on |ours - diffusers| after a whole run."""
    steps = len(ours.timesteps)
    bound = OPS_ROUNDINGS * U * magnitude * steps
    if ours.name == "unipc":
        lambdas = [vp(s)[2] for s in ours.sigmas[:-1]]
        inverse_h = sum(1 / abs(b - a) for a, b in itertools.pairwise(lambdas))
        bound += CONDITIONING_ROUNDINGS * U * spread * (inverse_h + 1)
    return bound


def assert_timesteps_match(ours, timesteps: np.ndarray, reference: np.ndarray) -> None:
    """Integer grids exactly; fractional timesteps within the module docstring's interpolation bound."""
    assert timesteps.shape == reference.shape
    if np.issubdtype(reference.dtype, np.integer):
        np.testing.assert_array_equal(timesteps, reference)
        return
    log_table = np.log(np.sqrt((1 - ours.alphas_cumprod.astype(np.float64)) / ours.alphas_cumprod))
    low = np.clip(np.floor(reference).astype(np.int64), 0, len(log_table) - 2)
    slope = np.abs(log_table[low + 1] - log_table[low])
    bound = TABLE_ROUNDINGS * U * (1 + np.abs(log_table[low])) / slope + 2 * U * np.abs(reference)
    difference = np.abs(timesteps.astype(np.float64) - reference)
    worst = int(np.argmax(difference / bound))
    assert difference[worst] <= bound[worst], (
        f"timestep {worst} differs by {difference[worst]:.3g} > {bound[worst]:.3g}")


def _run_both(name: str, steps: int, config: dict, options: dict, monkeypatch):
    """Same model outputs and noise through ours and diffusers'; returns (worst difference, bound). Options a
    user may pass per call go in as options; the others (prediction type, betas, ...) into the config."""
    user = {k: v for k, v in options.items() if k in USER_OPTIONS}
    ours = make_scheduler(name, {**config, **{k: v for k, v in options.items() if k not in user}}, **user)
    ref = _reference(name, config, options)
    timesteps = ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    assert_timesteps_match(ours, timesteps, ref.timesteps.numpy())
    assert ours.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=4 * U)
    rng = np.random.default_rng(steps)
    x = rng.standard_normal(SHAPE, dtype=np.float32) * np.float32(ours.init_noise_sigma)
    x_ref = torch.from_numpy(x.copy())
    worst, magnitude, outputs = 0.0, float(np.abs(x).max()), []
    for index, t in enumerate(timesteps):
        scaled, scaled_ref = ours.scale_model_input(x, index), ref.scale_model_input(x_ref, torch.tensor(t))
        worst = max(worst, float(np.abs(scaled - scaled_ref.numpy()).max()))
        output = rng.standard_normal(SHAPE, dtype=np.float32)
        noise = rng.standard_normal(SHAPE, dtype=np.float32) if ours.needs_noise(index) else None
        extra = _hand_noise(name, noise, monkeypatch) if noise is not None else {}
        x = ours.step(output, index, x, noise)
        x_ref = ref.step(torch.from_numpy(output), torch.tensor(t), x_ref, **extra).prev_sample
        assert x.dtype == np.float32
        worst = max(worst, float(np.abs(x - x_ref.numpy()).max()))
        magnitude = max(magnitude, float(np.abs(x_ref.numpy()).max()), float(np.abs(output).max()))
        outputs.append(output)
    spread = 2 * max(float(np.abs(o).max()) for o in outputs) * max(1.0, magnitude)
    return worst, float32_bound(ours, magnitude, spread)


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@pytest.mark.parametrize("steps", STEPS)
def test_matches_diffusers_tango_config(name, steps, monkeypatch):
    worst, bound = _run_both(name, steps, default_scheduler_config(), {}, monkeypatch)
    assert worst <= bound, f"{name} {steps} steps: {worst:.3g} > {bound:.3g}"


OTHER_CONFIGS = [
    ("ddpm", {"prediction_type": "epsilon"}), ("ddim", {"prediction_type": "epsilon"}),
    ("ddpm", {"timestep_spacing": "trailing", "steps_offset": 0}), ("ddim", {"timestep_spacing": "trailing"}),
    ("ddpm", {"timestep_spacing": "linspace"}), ("ddim", {"timestep_spacing": "linspace"}),
    ("ddpm", {"beta_schedule": "linear", "set_alpha_to_one": True}),
    ("ddim", {"beta_schedule": "linear", "set_alpha_to_one": True}),
    ("ddpm", {"prediction_type": "epsilon", "clip_sample": True}),
    ("ddim", {"prediction_type": "epsilon", "clip_sample": True}),
    ("ddim", {"prediction_type": "sample", "clip_sample": True, "clip_sample_range": 0.5}),
    ("ddpm", {"prediction_type": "sample", "clip_sample": True, "clip_sample_range": 0.5}),
    ("dpm++", {"use_karras_sigmas": True}), ("dpm++", {"solver_type": "heun"}),
    ("dpm++", {"final_sigmas_type": "sigma_min"}), ("dpm++", {"timestep_spacing": "leading"}),
    ("dpm++", {"timestep_spacing": "trailing"}), ("dpm++", {"euler_at_final": True}),
    ("dpm++", {"lower_order_final": False}), ("dpm++", {"solver_order": 1}),
    ("dpm++sde", {"solver_type": "heun"}), ("dpm++sde", {"use_karras_sigmas": True}),
    ("unipc", {"use_karras_sigmas": True}), ("unipc", {"timestep_spacing": "leading"}),
    ("unipc", {"final_sigmas_type": "sigma_min"}), ("unipc", {"disable_corrector": [0, 1]}),
    ("unipc", {"solver_order": 1}),
    ("euler", {"use_karras_sigmas": True}), ("euler", {"timestep_spacing": "leading"}),
    ("euler", {"final_sigmas_type": "sigma_min"}), ("euler", {"prediction_type": "epsilon"}),
    ("euler-a", {"timestep_spacing": "trailing"}), ("euler-a", {"prediction_type": "epsilon"}),
]


@pytest.mark.parametrize(("name", "options"), OTHER_CONFIGS, ids=[f"{n}-{o}" for n, o in OTHER_CONFIGS])
@pytest.mark.parametrize("steps", (8, 25))
def test_matches_diffusers_other_configs(name, options, steps, monkeypatch):
    worst, bound = _run_both(name, steps, default_scheduler_config(), options, monkeypatch)
    assert worst <= bound, f"{name} {options}: {worst:.3g} > {bound:.3g}"


def test_bound_is_tight_enough_to_catch_a_wrong_coefficient(monkeypatch):
    """The tolerance is not vacuous: a DDIM whose model output is off by 0.1% lands far outside it."""
    from tango_rt.runtime.schedulers import ddpm

    worst, bound = _run_both("ddim", 25, default_scheduler_config(), {}, monkeypatch)
    original = ddpm.DDIMScheduler.step

    def broken(self, model_output, index, sample, noise=None):
        return original(self, model_output * np.float32(1.001), index, sample, noise)

    monkeypatch.setattr(ddpm.DDIMScheduler, "step", broken)
    broken_worst, _ = _run_both("ddim", 25, default_scheduler_config(), {}, monkeypatch)
    assert worst <= bound < broken_worst


def test_alphas_cumprod_bit_exact(golden):
    np.testing.assert_array_equal(make_scheduler("ddpm").alphas_cumprod, golden["scheduler_alphas_cumprod"])


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_first_step_matches_golden(name, golden):
    scheduler = make_scheduler(name)
    np.testing.assert_array_equal(scheduler.set_timesteps(10), golden[f"{name}_timesteps"])
    noise = golden["ddpm_step_noise"][0] if name == "ddpm" else None
    out = scheduler.step(golden[f"{name}_step0_guided_model_output"], 0, golden[f"{name}_init_noise"], noise)
    reference = golden[f"{name}_step0_latents"]
    bound = OPS_ROUNDINGS * U * max(float(np.abs(reference).max()), 1.0)  # one step of the bound above
    np.testing.assert_allclose(out, reference, rtol=0, atol=bound)


def test_noise_draws_per_sampler():
    counts = {}
    for name in SCHEDULER_NAMES:
        scheduler = make_scheduler(name)
        scheduler.set_timesteps(20)
        counts[name] = scheduler.noise_count()
    assert counts == {"ddpm": 20, "ddim": 0, "dpm++": 0, "dpm++sde": 20, "unipc": 0, "euler": 0, "euler-a": 20}


def test_ddpm_draws_noise_at_every_step_including_the_last():
    scheduler = make_scheduler("ddpm")
    scheduler.set_timesteps(100)
    assert scheduler.timesteps[-1] == 1 and scheduler.noise_count() == 100


def test_set_timesteps_resets_multistep_state():
    """A scheduler reused for a second run must not carry the first run's history."""
    rng = np.random.default_rng(0)
    outputs = [rng.standard_normal(SHAPE, dtype=np.float32) for _ in range(5)]
    start = rng.standard_normal(SHAPE, dtype=np.float32)

    def run(scheduler):
        scheduler.set_timesteps(5)
        x = start
        for i, out in enumerate(outputs):
            x = scheduler.step(out, i, x)
        return x

    for name in ("dpm++", "unipc"):
        scheduler = make_scheduler(name)
        np.testing.assert_array_equal(run(scheduler), run(scheduler))


def test_bad_scheduler_input():
    with pytest.raises(InputError, match="unknown scheduler 'heun'"):
        make_scheduler("heun")
    with pytest.raises(InputError, match="steps must be between 1 and 1000"):
        make_scheduler("ddim").set_timesteps(0)
    with pytest.raises(InputError, match="steps must be between 1 and 1000"):
        make_scheduler("dpm++").set_timesteps(1001)
    with pytest.raises(InputError, match="prediction_type"):
        make_scheduler("ddim", {**default_scheduler_config(), "prediction_type": "flow"})
    with pytest.raises(InputError, match=r"unknown key\(s\) \['karras'\] in scheduler_options"):
        make_scheduler("dpm++", karras=True)
    with pytest.raises(InputError, match="solver_type='bh2' is not supported"):
        make_scheduler("dpm++", solver_type="bh2")
    with pytest.raises(InputError, match=r"scheduler_options.solver_order must be one of \[1, 2\]"):
        make_scheduler("unipc", solver_order=3)
    with pytest.raises(InputError, match=r"ddpm step 0 .* needs a noise tensor"):
        scheduler = make_scheduler("ddpm")
        scheduler.set_timesteps(2)
        scheduler.step(np.zeros((1, 8, 8, 4), np.float32), 0, np.zeros((1, 8, 8, 4), np.float32), None)


@pytest.mark.parametrize(("options", "message"), [
    ({"num_train_timesteps": 1_000_000_000}, r"unknown key\(s\) \['num_train_timesteps'\] in scheduler_options"),
    ({"prediction_type": "epsilon"}, r"unknown key\(s\) \['prediction_type'\] in scheduler_options"),
    ({"trained_betas": [0.1] * 1000}, "unknown key"),
    ({"beta_start": 0.1, "beta_end": 0.2}, r"\['beta_end', 'beta_start'\]"),
    ({"sigma_min": "x"}, r"scheduler_options.sigma_min must be a finite number in \(0, 10000\], got 'x'"),
    ({"sigma_max": float("nan")}, "scheduler_options.sigma_max must be a finite number"),
    ({"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min .* must be below sigma_max"),
    ({"use_karras_sigmas": "yes"}, "scheduler_options.use_karras_sigmas must be true or false"),
    ({"solver_order": True}, r"scheduler_options.solver_order must be one of \[1, 2\]"),
    ({"timestep_spacing": "cosine"}, "scheduler_options.timestep_spacing must be one of"),
    ({"disable_corrector": [0, -1]},
     r"scheduler_options.disable_corrector must be a list of at most 1000 integers in \[0, 1000\)"),
    ({"disable_corrector": 3}, "scheduler_options.disable_corrector must be a list"),
])
def test_only_user_level_options_are_accepted_per_call(options, message):
    """A per-call option may change how the sampler walks the schedule, never the schedule the model was trained
    with; each refusal names the key before any array is built."""
    with pytest.raises(InputError, match=message):
        make_scheduler("unipc", **options)


def test_training_keys_still_come_from_the_checkpoint_config():
    config = {**default_scheduler_config(), "prediction_type": "epsilon"}
    assert make_scheduler("ddim", config).config.prediction_type == "epsilon"
    assert make_scheduler("unipc", use_karras_sigmas=True, sigma_min=0.1).config.sigma_min == 0.1


class _Img2Img:
    """What diffusers' StableDiffusionImg2ImgPipeline.get_timesteps reads of its pipeline: the scheduler."""

    def __init__(self, scheduler):
        self.scheduler = scheduler


EDIT_CASES = [(name, steps, strength, options) for name in SCHEDULER_NAMES
              for steps, strength, options in [(25, 0.5, {}), (15, 0.3, {}), (20, 1.0, {}),
                                               (15, 0.6, {"use_karras_sigmas": True})]
              if not (name == "euler-a" and options)]  # euler-a takes no Karras sigmas


@pytest.mark.parametrize(("name", "steps", "strength", "options"), EDIT_CASES)
def test_edit_start_and_add_noise_match_diffusers(name, steps, strength, options):
    """The start step of an edit is diffusers' image-to-image rule (its own get_timesteps), and add_noise at that
    step and at every later one equals the diffusers class's add_noise (with its begin index set as the pipeline
    sets it). Tolerance: a few float32 roundings of a magnitude-1 sum (sqrt / vp of one sigma, two products)."""
    from tango_rt.runtime.schedulers.base import first_step

    ours, ref = make_scheduler(name, **options), _reference(name, default_scheduler_config(), options)
    timesteps = ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    reference_steps, remaining = diffusers.StableDiffusionImg2ImgPipeline.get_timesteps(
        _Img2Img(ref), steps, strength, "cpu")
    start = first_step(steps, strength)
    assert remaining == steps - start
    assert_timesteps_match(ours, timesteps[start:], reference_steps.numpy())
    rng = np.random.default_rng(steps)
    x0, eps = rng.standard_normal(SHAPE, dtype=np.float32), rng.standard_normal(SHAPE, dtype=np.float32)
    for index in range(start, steps):
        if hasattr(ref, "set_begin_index"):
            ref.set_begin_index(index)
            ref._step_index = None
        expected = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(eps), ref.timesteps[index : index + 1])
        got = ours.add_noise(x0, eps, index)
        magnitude = float(np.abs(x0).max() + np.abs(eps).max() * max(1.0, float(ours.init_noise_sigma)))
        np.testing.assert_allclose(got, expected.numpy(), rtol=0, atol=OPS_ROUNDINGS * U * magnitude)


def test_add_noise_at_the_end_of_the_run_is_the_clean_sample():
    x0 = np.ones(SHAPE, np.float32)
    for name in ("ddpm", "ddim", "unipc", "euler"):
        scheduler = make_scheduler(name)
        scheduler.set_timesteps(10)
        np.testing.assert_array_equal(scheduler.add_noise(x0, np.full(SHAPE, 5, np.float32), 10), x0)
    with pytest.raises(InputError, match=r"strength must be in \(0, 1\]"):
        from tango_rt.runtime.schedulers.base import first_step

        first_step(10, 0)
