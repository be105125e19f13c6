"""Everything of the TensorRT path that needs no GPU: profiles, buffer plans, engine manifests, compatibility
checks, and the backend's copy / shape / enqueue / CUDA-graph logic against a host-memory stand-in for CUDA
and TensorRT. The real thing runs in tests/test_tensorrt_gpu.py where TensorRT and a GPU exist."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from trt_stand_in import ENV, FakeContext, FakeCuda, stand_in_component

from conftest import FIXTURE
from tango_rt.engines.build import apply_precision, engine_manifest
from tango_rt.engines.profiles import profile_shapes, static_ranges
from tango_rt.runtime.backends import trt_backend
from tango_rt.runtime.backends.trt_backend import plan_buffers
from tango_rt.runtime.backends.trt_compat import check_environment, check_onnx_source, rebuild_command
from tango_rt.runtime.checkpoint import load_checkpoint
from tango_rt.runtime.errors import ArtifactError, BackendError, InputError
from tango_rt.runtime.specs import ShapeProfile, component_specs, dims


@pytest.fixture(scope="module")
def config():
    return load_checkpoint(str(FIXTURE)).pipeline_config()


@pytest.fixture(scope="module")
def specs(config):
    return component_specs(config)


def test_dynamic_profiles_cover_the_declared_ranges(config, specs):
    ranges = ShapeProfile(max_batch=4).ranges(config)
    unet = profile_shapes(specs["unet"], ranges)
    assert unet["sample"] == ((1, 8, 8, 16), (2, 8, 256, 16), (8, 8, 1024, 16))
    assert unet["timestep"] == ((1,), (2,), (8,))
    assert unet["encoder_hidden_states"] == ((1, 1, 32), (2, 32, 32), (8, 512, 32))
    assert unet["encoder_attention_mask"] == ((1, 1), (2, 32), (8, 512))
    assert profile_shapes(specs["vocoder"], ranges)["mel"] == ((1, 32, 64), (1, 1024, 64), (4, 4096, 64))
    assert profile_shapes(specs["text_encoder"], ranges)["input_ids"] == ((1, 1), (2, 32), (8, 512))


def test_static_profiles_are_one_shape(config, specs):
    ranges = static_ranges(config, batch=2, text_len=64)
    shapes = profile_shapes(specs["unet"], ranges)
    assert shapes["sample"] == ((4, 8, 256, 16),) * 3 and shapes["encoder_hidden_states"] == ((4, 64, 32),) * 3
    assert profile_shapes(specs["vae_decoder"], ranges)["latents"] == ((2, 8, 256, 16),) * 3
    assert ranges["samples"].max == 163872
    with pytest.raises(InputError, match="multiple of 8"):
        static_ranges(config, batch=1, text_len=64, latent_frames=100)


def test_buffer_plan_sizes(config, specs):
    ranges = ShapeProfile(max_batch=4).ranges(config)
    plans = {p.name: p for p in plan_buffers(specs["unet"], ranges)}
    assert plans["sample"].max_shape == (8, 8, 1024, 16) and plans["sample"].nbytes == 8 * 8 * 1024 * 16 * 4
    assert plans["encoder_attention_mask"].nbytes == 8 * 512  # bool: one byte
    half = {p.name: p for p in plan_buffers(specs["unet"], ranges, {"noise_pred": "float16"})}
    assert half["noise_pred"].nbytes == plans["noise_pred"].nbytes // 2


def _engine_manifest(**tensorrt) -> dict:
    return {"tensorrt": {**ENV, "static": None, **tensorrt}, "built_from": {"folder": "/models/tango2-onnx"}}


def test_engines_from_another_tensorrt_or_gpu_are_refused_with_the_rebuild_command():
    with pytest.raises(ArtifactError, match=r"built with TensorRT 10\.13\.0\.35, this machine has 11\.4\.0\.106") as e:
        check_environment(_engine_manifest(), {**ENV, "version": "11.4.0.106"}, "/engines")
    assert "tango-rt build --onnx /models/tango2-onnx --out /engines --force" in str(e.value)
    with pytest.raises(ArtifactError, match=r"compute capability 9\.0\), this GPU is NVIDIA L4 \(8\.9\)"):
        check_environment(_engine_manifest(), {**ENV, "gpu": "NVIDIA L4", "compute_capability": "8.9"}, "/engines")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_environment(_engine_manifest(), {**ENV, "gpu": "NVIDIA H100 PCIe"}, "/engines")
    assert "may be slower" in str(caught[0].message)
    check_environment(_engine_manifest(), ENV, "/engines")  # same machine: fine
    with pytest.raises(ArtifactError, match="no 'tensorrt' section"):
        check_environment({}, ENV, "/engines")


def test_rebuild_command_keeps_static_shapes():
    manifest = _engine_manifest(static={"batch": 2, "text_len": 48, "latent_frames": 256})
    assert rebuild_command(manifest, "/e").endswith("--force --static --batch 2 --text-len 48")


def test_rebuild_command_keeps_dynamic_profile_limits(config):
    from tango_rt.engines.profiles import engine_ranges

    ranges = engine_ranges(config, ShapeProfile().ranges(config), max_batch=2, max_duration=20.0)
    manifest = {"shape_ranges": {k: v.to_list() for k, v in ranges.items()}, "pipeline": config.to_dict(),
                "tensorrt": {"static": None}, "built_from": {"folder": "/o"}}
    expected = "tango-rt build --onnx /o --out /e --force --max-batch 2 --max-duration 20.16"
    assert rebuild_command(manifest, "/e") == expected


def test_engines_older_than_their_onnx_are_stale(tmp_path):
    onnx = tmp_path / "onnx"
    onnx.mkdir()
    (onnx / "manifest.json").write_text(json.dumps({"components": {"unet": {"sha256": "sha256:new"}}}))
    manifest = {**_engine_manifest(), "built_from": {"folder": str(onnx), "onnx_sha256": {"unet": "sha256:old"}}}
    with pytest.raises(ArtifactError, match=r"the engines for \['unet'\] were built from ONNX graphs that have"):
        check_onnx_source(manifest, "/engines")
    manifest["built_from"]["onnx_sha256"]["unet"] = "sha256:new"
    check_onnx_source(manifest, "/engines")
    manifest["built_from"]["folder"] = str(tmp_path / "gone")
    check_onnx_source(manifest, "/engines")  # self-contained engine folder: no source needed


def test_engine_manifest_records_what_the_runtime_checks(config):
    onnx_manifest = {"source": {"model": "m", "weights_digest": "d"}, "pipeline": config.to_dict(), "precision": "fp16",
                     "components": {"unet": {"sha256": "sha256:abc"}}}
    ranges = static_ranges(config, batch=1, text_len=32)
    manifest = engine_manifest(onnx_manifest, Path("/x/onnx"), ranges, {"unet": {"format": "tensorrt"}}, ENV,
                               {"batch": 1, "text_len": 32, "latent_frames": 256}, 3)
    assert manifest["tensorrt"]["version"] == ENV["version"] and manifest["tensorrt"]["static"]["text_len"] == 32
    assert manifest["built_from"] == {"folder": str(Path("/x/onnx").resolve()), "onnx_sha256": {"unet": "sha256:abc"}}
    assert manifest["shape_ranges"]["cfg_batch"] == [2, 2, 2, 1] and manifest["precision"] == "fp16"
    assert "mel_frontend" not in manifest  # an export from before audio input has none to carry
    front_end = {"file": "mel_frontend.npz", "size": 1, "sha256": "sha256:f", "config": {}}
    carried = engine_manifest({**onnx_manifest, "mel_frontend": front_end}, Path("/x/onnx"), ranges, {}, ENV, None, 3)
    assert carried["mel_frontend"] == front_end  # the audio front end travels with the engines


# --- the backend against a host-memory stand-in ------------------------------------------------------------------


def _component(specs, config, name, compute, dtypes=None, cuda_graph=False):
    return stand_in_component(specs[name], config, compute, dtypes, cuda_graph)


def test_backend_copies_shapes_and_results(specs, config, tiny_tango, golden):
    reference = tiny_tango.pipeline.components["vae_decoder"]
    component, context, _ = _component(specs, config, "vae_decoder", lambda f: reference(**f))
    mel = component(latents=golden["ddim_final_latents"][:2])
    np.testing.assert_array_equal(mel, reference(latents=golden["ddim_final_latents"][:2]))
    assert context.shapes["latents"] == (2, 8, 256, 16) and context.executions == 1


def test_an_engine_with_two_outputs_returns_both(specs, config, tiny_tango):
    """The VAE encoder's engine has two outputs (posterior mean and log-variance): each is copied back from its
    own buffer, in the declared order, converted from an FP16 engine's types to float32."""
    reference = tiny_tango.pipeline.component("vae_encoder")
    component, context, _ = _component(specs, config, "vae_encoder", lambda f: reference(**f),
                                       dtypes={"mean": "float16", "logvar": "float16"})
    feeds = specs["vae_encoder"].sample_inputs(dims(config, 2, 1, 24), config, seed=3)
    mean, logvar = component(**feeds)
    want_mean, want_logvar = reference(**feeds)
    assert mean.dtype == logvar.dtype == np.float32 and mean.shape == (2, 8, 24, 16) == logvar.shape
    np.testing.assert_allclose(mean, want_mean, rtol=1e-3, atol=2e-3)  # one FP16 rounding of each output
    np.testing.assert_allclose(logvar, want_logvar, rtol=1e-3, atol=2e-3)
    assert context.shapes["mel"] == (2, 1, 96, 64)


def test_fp16_engine_io_is_converted(specs, config, tiny_tango, golden):
    reference = tiny_tango.pipeline.components["vocoder"]
    component, _, _ = _component(specs, config, "vocoder", lambda f: reference(mel=f["mel"].astype(np.float32)),
                                 dtypes={"mel": "float16", "waveform": "float16"})
    wave = component(mel=np.ascontiguousarray(golden["vae_mel"][:1, 0]))
    assert wave.dtype == np.float32
    np.testing.assert_allclose(wave, golden["vocoder_wave_float"][:1], atol=2e-2)


def test_failed_enqueue_and_rejected_shape_are_errors(specs, config):
    component, context, _ = _component(specs, config, "vae_decoder", lambda f: np.zeros((1, 1, 64, 64)))
    context.fail = True
    with pytest.raises(BackendError, match="execute_async_v3 failed"):
        component(latents=np.zeros((1, 8, 16, 16), np.float32))
    context.fail = False
    context.max_dims["latents"] = (1, 8, 8, 16)  # as if the engine's profile stopped at 8 frames
    with pytest.raises(BackendError, match=r"rejected shape \(1, 8, 16, 16\) for input 'latents'"):
        component(latents=np.zeros((1, 8, 16, 16), np.float32))


def test_cuda_graph_warms_up_captures_then_replays(specs, config):
    calls = []

    def compute(feeds):
        calls.append(feeds["latents"].shape)
        return np.full((feeds["latents"].shape[0], 1, feeds["latents"].shape[2] * 4, 64), 0.5)

    component, context, cuda = _component(specs, config, "vae_decoder", compute, cuda_graph=True)
    latents = np.zeros((1, 8, 16, 16), np.float32)
    for _ in range(4):
        assert component(latents=latents).shape == (1, 1, 64, 64)
    assert context.executions == 4 and cuda.launches == 3  # run 1 plain (warm-up), 2 captured + launched, 3-4 replays
    component(latents=np.zeros((1, 8, 32, 16), np.float32))  # another shape: plain enqueue, graph kept
    assert cuda.launches == 3 and context.executions == 5


class FakeEngine:
    def __init__(self, spec, size, dtypes):
        self.spec, self.device_memory_size_v2, self.dtypes = spec, size, dtypes

    def get_tensor_dtype(self, name):
        return self.dtypes.get(name, "float32")

    def create_execution_context(self, strategy):
        assert strategy == "USER_MANAGED"
        return FakeContext(self.spec, None, None, {}, {})


class FakeTrt:
    """The slice of the tensorrt module that load_components touches."""

    __version__ = ENV["version"]

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class ExecutionContextAllocationStrategy:
        USER_MANAGED = "USER_MANAGED"

    def __init__(self, engines):
        self.engines = engines

    def Runtime(self, logger):
        engines = self.engines

        class Runtime:
            def deserialize_cuda_engine(self, data):
                return engines[data.decode()]

        return Runtime()

    @staticmethod
    def nptype(dtype):
        return np.dtype(dtype).type


def test_load_components_shares_one_activation_buffer(tmp_path, onnx_dir, specs):
    """Engine folder + manifest as `build` writes them; contexts share the largest activation allocation."""
    import shutil

    from tango_rt.export.folders import file_entry
    from tango_rt.runtime.artifacts import open_artifact

    folder = tmp_path / "engines"
    shutil.copytree(onnx_dir, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    sizes = {"text_encoder": 100, "unet": 5000, "vae_decoder": 3000, "vocoder": 700}
    for name in sizes:
        (folder / f"{name}.plan").write_text(name)
        manifest["components"][name] = {"format": "tensorrt", **file_entry(folder, f"{name}.plan"), "precision": "fp16"}
    manifest["tensorrt"] = {**ENV, "static": None}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    engines = {n: FakeEngine(specs[n], size, {"noise_pred": "float16"}) for n, size in sizes.items()}
    cuda = FakeCuda()
    components = trt_backend.load_components(open_artifact(folder), list(sizes), cuda=cuda, trt=FakeTrt(engines))
    scratch = {c.context.device_memory for c in components.values()}
    assert len(scratch) == 1 and next(iter(scratch))[1] == 5000  # one allocation, the largest engine's size
    assert components["unet"].io_dtypes["noise_pred"] == np.float16
    assert components["unet"].buffers["sample"] in cuda.memory
    with pytest.raises(ArtifactError, match="built with TensorRT"):
        trt_backend.load_components(open_artifact(folder), ["unet"], cuda=cuda,
                                    trt=type("Old", (FakeTrt,), {"__version__": "8.6.1"})(engines))


def test_missing_tensorrt_is_a_clear_error(onnx_dir, tmp_path):
    from tango_rt.cli import main

    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here: the error path does not apply")
    except ImportError:
        pass
    assert main(["build", "--onnx", str(onnx_dir), "--out", str(tmp_path / "e")]) == 2


class _Flags:
    TF32 = "TF32"


class _Config:
    def __init__(self) -> None:
        self.cleared: list[str] = []

    def clear_flag(self, flag: str) -> None:
        self.cleared.append(flag)


@pytest.mark.parametrize(("precision", "cleared"), [("fp32", ["TF32"]), ("fp16", [])])
def test_fp32_engines_are_built_without_tf32(precision, cleared):
    """TensorRT turns TF32 on by default; an engine labelled FP32 must not compute in it."""
    trt, config = type("trt", (), {"BuilderFlag": _Flags}), _Config()
    apply_precision(trt, config, precision)
    assert config.cleared == cleared


def test_tensorrt_older_than_10_1_is_refused_by_name():
    from tango_rt.runtime.backends.trt_compat import check_tensorrt_version

    with pytest.raises(BackendError, match=r"TensorRT 10.0.1 is too old: tango-rt needs >= 10.1"):
        check_tensorrt_version("10.0.1")
    check_tensorrt_version("10.1.0")
    check_tensorrt_version("11.0.0.5")


@pytest.fixture(scope="module")
def full_config():
    return load_checkpoint("random:full").pipeline_config()  # configs only: no weights are built


def test_the_export_range_is_not_a_buildable_engine_profile(full_config):
    """The export's declared range (batch 8, 40.96 s) puts 16 x 5 x 16384^2 FP32 attention scores at its maximum
    (~86 GB); the default engine profile (4 clips, 10.24 s) stays far below the limit, and a wider one is refused
    with the figure and the way to narrow it, before TensorRT runs."""
    from tango_rt.engines.profiles import check_buildable, engine_ranges, largest_activation

    declared = ShapeProfile().ranges(full_config)
    what, size = largest_activation(full_config, declared)
    assert what == "UNet self-attention scores" and size == 16 * 5 * 16384**2 * 4
    with pytest.raises(InputError, match=r"UNet self-attention scores alone are 80\.0 GiB .*--max-batch"):
        check_buildable(full_config, declared)
    default = engine_ranges(full_config, declared)
    assert default["batch"].max == 4 and default["cfg_batch"].max == 8 and default["latent_frames"].max == 256
    assert default["text_len"].to_list() == declared["text_len"].to_list()
    check_buildable(full_config, default)
    assert largest_activation(full_config, default)[1] == 8 * 5 * 4096**2 * 4
    wide = engine_ranges(full_config, declared, max_batch=1, max_duration=20.0)
    assert wide["latent_frames"].max == 504 and wide["batch"].max == 1
    with pytest.raises(InputError, match=r"batch up to 9 .* declared for at most 8"):
        engine_ranges(full_config, declared, max_batch=9)


def test_an_unbuildable_profile_is_refused_before_tensorrt_is_needed(onnx_dir, tmp_path):
    from tango_rt.engines.build import build_engines

    with pytest.raises(InputError, match="engine profile too large to build"):
        build_engines(onnx_dir, tmp_path / "engines", max_activation_gb=1e-6)
    assert not (tmp_path / "engines").exists()


class _FixedBatch(trt_backend.Component):
    """A network that, like a static engine, runs only at its built batch."""

    backend = "static-stand-in"

    def run(self, feeds, outputs):
        sample = feeds["sample"]
        assert len(sample) == self.ranges["cfg_batch"].max, "the engine saw an unpadded batch"
        return sample * np.float32(2) + feeds["timestep"][:, None, None, None]


def test_a_fixed_batch_network_gets_padded_rows_and_returns_only_the_real_ones(specs, config):
    ranges = static_ranges(config, batch=2, text_len=8, latent_frames=16)  # cfg_batch fixed at 4
    unet = _FixedBatch(specs["unet"], ranges)
    rng = np.random.default_rng(0)
    feeds = {"sample": rng.standard_normal((1, 8, 16, 16), dtype=np.float32),
             "timestep": np.array([7.0], np.float32),
             "encoder_hidden_states": rng.standard_normal((1, 8, 32), dtype=np.float32),
             "encoder_attention_mask": np.ones((1, 8), bool)}
    out = unet(outputs=["noise_pred"], **feeds)
    np.testing.assert_array_equal(out, feeds["sample"] * 2 + 7)  # one row in, that row's result out
    full = unet(outputs=["noise_pred"], **{k: np.concatenate([v] * 4) for k, v in feeds.items()})
    assert full.shape[0] == 4  # full batch untouched


def test_the_server_warms_up_at_a_length_a_static_engine_accepts(config):
    from types import SimpleNamespace

    pytest.importorskip("prometheus_client")
    from tango_rt.serving.service import warmup_duration

    static = SimpleNamespace(ranges=static_ranges(config, batch=1, text_len=64), config=config)
    assert warmup_duration(static) == config.duration(256)  # the engines' one length, 10.24 s
    dynamic = SimpleNamespace(ranges=ShapeProfile().ranges(config), config=config)
    assert warmup_duration(dynamic) == config.duration(8)
    checkpoint = SimpleNamespace(ranges={}, config=config)
    assert warmup_duration(checkpoint) == config.duration(config.unet_downsample)


class _Cudart:
    """cuda-python's runtime module, as far as CudaRuntime uses it: CUDA's current device is per host thread."""

    class cudaError_t:
        cudaSuccess = 0

    def __init__(self) -> None:
        import threading

        self.local = threading.local()
        self.mallocs: list[tuple[str, int]] = []

    def cudaGetDeviceCount(self):
        return 0, 2

    def cudaSetDevice(self, index):
        self.local.device = index
        return (0,)

    def cudaMalloc(self, nbytes):
        import threading

        self.mallocs.append((threading.current_thread().name, getattr(self.local, "device", 0)))
        return 0, 4096


def test_the_cuda_device_follows_the_runtime_into_every_thread(monkeypatch):
    """Loaded on cuda:1 in one thread, used from another (the server's worker): the calls land on device 1."""
    import threading

    from tango_rt.runtime.backends import cuda_runtime

    fake = _Cudart()
    monkeypatch.setattr(cuda_runtime, "_import_cudart", lambda: fake)
    runtime = cuda_runtime.CudaRuntime(1)
    runtime.malloc(16)
    worker = threading.Thread(target=runtime.malloc, args=(16,), name="tango-worker")
    worker.start()
    worker.join()
    assert fake.mallocs == [("MainThread", 1), ("tango-worker", 1)]
    with pytest.raises(BackendError, match="CUDA device 2 requested, 2 visible"):
        cuda_runtime.CudaRuntime(2)


def test_onnxruntime_gpu_providers_get_the_device_index():
    from tango_rt.runtime.backends.ort_backend import with_device_id

    providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert with_device_id(providers, "cuda:1") == [("TensorrtExecutionProvider", {"device_id": 1}),
                                                   ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert with_device_id(["CPUExecutionProvider"], "cpu") == ["CPUExecutionProvider"]
    assert with_device_id(providers[1:], "cuda")[0] == ("CUDAExecutionProvider", {"device_id": 0})


def test_an_unchanged_input_is_not_copied_to_the_device_again(specs, config):
    """The UNet's embeddings and mask are the same arrays at every step: copied once, not once per step."""
    def unet(feeds):  # both declared outputs: the noise prediction and the deep feature
        sample = feeds["sample"]
        return sample * 0, np.zeros((len(sample), config.unet_feature_channels, *sample.shape[2:]), np.float32)

    component, _, cuda = _component(specs, config, "unet", unet)
    copies = []
    real = cuda.copy_to_device
    cuda.copy_to_device = lambda pointer, array, stream: (copies.append(pointer), real(pointer, array, stream))
    rng = np.random.default_rng(0)
    text = rng.standard_normal((2, 8, 32), dtype=np.float32)
    mask = np.ones((2, 8), bool)
    for step in range(3):
        component(sample=rng.standard_normal((2, 8, 16, 16), dtype=np.float32),
                  timestep=np.full(2, 900.0 - step, np.float32), encoder_hidden_states=text,
                  encoder_attention_mask=mask)
    assert len(copies) == 4 + 2 + 2  # all four inputs once, then sample and timestep at each later step
    changed = text.copy()
    component(sample=np.zeros((2, 8, 16, 16), np.float32), timestep=np.zeros(2, np.float32),
              encoder_hidden_states=changed, encoder_attention_mask=mask)
    assert len(copies) == 8 + 3  # a new array is copied
