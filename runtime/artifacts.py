"""Exported model folders and their manifest: what was built, from what, for which shapes, and is it intact.

A folder written by `tango-rt export` (ONNX) or `tango-rt build` (TensorRT) is self-contained: graphs or engines,
`tokenizer/`, `scheduler_config.json` and `manifest.json`. The manifest records the source model and a digest of
its weights, the pipeline config (shapes), the declared shape ranges, and per component its file, size,
SHA-256, precision and IO. The runtime refuses a folder whose manifest it cannot read, whose files are missing
or changed, or whose source weights differ from the checkpoint it is mixed with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import mel
from .checkpoint import Checkpoint
from .config import PipelineConfig
from .errors import ArtifactError, CheckpointError
from .files import HUB_ID, sha256_files
from .mel import MelFrontEnd
from .specs import DimRange
from .tokenizer import PromptTokenizer

MANIFEST = "manifest.json"
FORMAT = "tango-rt-artifact"
FORMAT_VERSION = 1
TOKENIZER_DIR = "tokenizer"
SCHEDULER_FILE = "scheduler_config.json"
FRONT_END = "mel_frontend"  # manifest key (and file stem) of the audio front end's buffers (audio in)


def inside(root: Path, name: str) -> Path:
    """root / name, refusing a manifest entry that points outside the folder (`../`, an absolute path, a link)."""
    path = root / name
    resolved, base = path.resolve(), root.resolve()
    if Path(name).is_absolute() or (resolved != base and base not in resolved.parents):
        raise ArtifactError(f"{root / MANIFEST} names the file {name!r}, which is outside the folder: refused "
                            "(a manifest lists only files inside its own folder)")
    return path


def is_artifact(model: str | Path) -> bool:
    return (Path(model).expanduser() / MANIFEST).is_file()


def artifact_root(model: str, revision: str | None = None) -> Path | None:
    """The folder of an exported model: a local folder with a manifest, or a Hub repository whose root holds one;
    None for anything else (a checkpoint). For a Hub id only the small files are fetched here (manifest, tokenizer,
    scheduler config); `fetch_components` gets the graphs the chosen backends need. A checkpoint repository (no
    manifest) or an offline, uncached id gives None, and the checkpoint loader reports what is wrong."""
    local = Path(model).expanduser()
    if is_artifact(local):
        return local
    if local.exists() or not HUB_ID.match(model):
        return None
    from .checkpoint import hub_download

    try:
        root = hub_download(model, (MANIFEST, SCHEDULER_FILE, f"{TOKENIZER_DIR}/*"), "exported model", revision)
    except CheckpointError:
        return None
    return root if is_artifact(root) else None


def fetch_components(model: str, artifact: Artifact, names: Sequence[str], revision: str | None = None,
                     front_end: bool = False) -> None:
    """Download the files of the components `names` (and of the audio front end) of a Hub-hosted export into its
    snapshot (no-op for a local folder or files already cached): a torch text encoder mixed with ONNX Runtime
    networks fetches no T5 graph, and generation fetches no VAE encoder."""
    if is_artifact(Path(model).expanduser()) or not (names or front_end):
        return
    from .checkpoint import hub_download

    files = [item["file"] for name in names if name in artifact.manifest["components"]
             for item in Artifact._file_items(artifact.manifest["components"][name])]
    if front_end and FRONT_END in artifact.manifest:
        files.append(artifact.manifest[FRONT_END]["file"])
    hub_download(model, tuple(files), "exported model", revision)


class Artifact:
    """A validated exported folder. Construct with `open_artifact`."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = root
        self.manifest = manifest
        self.pipeline_config = PipelineConfig.from_dict(manifest["pipeline"])
        self.ranges = {k: DimRange.from_list(v) for k, v in manifest["shape_ranges"].items()}
        self.scheduler_config = json.loads((root / SCHEDULER_FILE).read_text())

    @property
    def source_model(self) -> str:
        return self.manifest["source"]["model"]

    def tokenizer(self) -> PromptTokenizer:
        return PromptTokenizer.from_folder(self.root / TOKENIZER_DIR)

    def component(self, name: str, fmt: str) -> dict[str, Any]:
        """The manifest entry of one component in format `fmt` ("onnx" or "tensorrt")."""
        entry = self.manifest["components"].get(name)
        if entry is None or entry.get("format") != fmt:
            have = {k: v.get("format") for k, v in self.manifest["components"].items()}
            raise ArtifactError(f"{self.root} has no {fmt} {name} (it holds {have}); export or build it first")
        return entry

    @staticmethod
    def _file_items(entry: dict[str, Any]) -> list[dict[str, Any]]:
        """A component's graph or engine file, its external data files, then its ONNX Runtime graph if any."""
        return [entry, *entry.get("external_data", []), *([entry["ort_graph"]] if "ort_graph" in entry else [])]

    def ort_graph(self, name: str) -> Path | None:
        """The ONNX graph of a component with ONNX Runtime's fused attention (it shares the plain graph's
        external data), checked like `files`; None when the export wrote none for it."""
        paths = self.files(name, "onnx")
        return paths[-1] if "ort_graph" in self.component(name, "onnx") else None

    def files(self, name: str, fmt: str) -> list[Path]:
        """Paths of a component's files after checking they exist with the recorded size."""
        return [self._checked(item) for item in self._file_items(self.component(name, fmt))]

    def _checked(self, item: dict[str, Any]) -> Path:
        """The path of a manifest file entry, inside the folder, present, with the recorded size."""
        path = inside(self.root, item["file"])
        if not path.is_file():
            raise ArtifactError(f"{path} is missing; the folder is incomplete: re-export it with --force")
        if path.stat().st_size != item["size"]:
            raise ArtifactError(
                f"{path} has {path.stat().st_size} bytes but the manifest recorded {item['size']}: it changed "
                "after export (stale or partial copy); re-export it with --force"
            )
        return path

    def mel_frontend(self) -> MelFrontEnd:
        """The audio -> log-mel front end the export copied from its checkpoint (runtime/mel.py)."""
        entry = self.manifest.get(FRONT_END)
        if entry is None:
            raise ArtifactError(f"{self.root} has no audio front end (exported by an earlier tango-rt, before audio "
                                "input): re-export it with `tango-rt export --force`")
        return mel.load_npz(self._checked(entry), entry["config"])

    def verify_hashes(self) -> None:
        """Full integrity check (SHA-256 of every file): slower, done by `tango-rt check`."""
        items = [item for entry in self.manifest["components"].values() for item in self._file_items(entry)]
        for item in [*items, *([self.manifest[FRONT_END]] if FRONT_END in self.manifest else [])]:
            path = self._checked(item)
            if sha256_files([path]) != item["sha256"]:
                raise ArtifactError(f"{path} does not match its manifest digest: it changed after export")

    def check_source(self, checkpoint: Checkpoint) -> None:
        """Torch components mixed in must come from the same weights the graphs were exported from."""
        recorded, current = self.manifest["source"]["weights_digest"], checkpoint.weights_digest()
        if current != recorded:
            raise ArtifactError(
                f"{self.root} was exported from weights {recorded}, but {checkpoint.source!r} now has "
                f"{current}; re-export, or run every component from the exported folder"
            )


def open_artifact(folder: str | Path) -> Artifact:
    root = Path(folder).expanduser()
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{root} has no {MANIFEST}: not an exported tango-rt folder") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{root / MANIFEST} is not valid JSON ({exc}); re-export the folder") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{root / MANIFEST} is not a tango-rt manifest (format {manifest.get('format')!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{root} uses manifest format {version} (written by tango-rt {manifest.get('tango_rt_version')}); "
            f"this tango-rt reads format {FORMAT_VERSION}: re-export with this version (`tango-rt export --force`)"
        )
    for key in ("source", "pipeline", "shape_ranges", "components"):
        if key not in manifest:
            raise ArtifactError(f"{root / MANIFEST} lacks '{key}': incomplete manifest; re-export the folder")
    if not (root / SCHEDULER_FILE).is_file() or not (root / TOKENIZER_DIR / "tokenizer.json").is_file():
        raise ArtifactError(f"{root} lacks {SCHEDULER_FILE} or {TOKENIZER_DIR}/tokenizer.json; re-export it")
    return Artifact(root, manifest)
