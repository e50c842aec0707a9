"""Load an ACT checkpoint with LeRobot and trace it into one self-contained ONNX graph.

The graph takes what a robot produces (raw joint values, uint8 HWC RGB frames) and
returns actions in robot units, so clients never need LeRobot or the stats.
Normalization is LeRobot's own (the checkpoint's normalizer steps are called during
tracing), so the baked arithmetic is exactly what the LeRobot pipeline does.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lerobot.configs import FeatureType
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.act.modeling_act import ACTPolicy
from lerobot.policies.factory import make_pre_post_processors
from lerobot.processor.normalize_processor import (
    NormalizerProcessorStep,
    UnnormalizerProcessorStep,
)
from torch import Tensor, nn

from orchestrator.triton.model_contract import ACTION_OUTPUT, STATE_INPUT, image_input

from .checkpoint import CheckpointInfo
from .errors import ExportError

logger = logging.getLogger(__name__)

OBS_IMAGES = "observation.images"  # the list ACT's model reads all cameras from
DEFAULT_OPSET = 17


@dataclass
class LoadedPolicy:
    """The LeRobot objects for one checkpoint: the reference the graph must match."""

    policy: Any  # ACTPolicy
    preprocessor: Any  # PolicyProcessorPipeline
    postprocessor: Any
    normalizer: NormalizerProcessorStep
    unnormalizer: UnnormalizerProcessorStep
    image_keys: tuple[str, ...]

    def reference(self, state: Tensor, images: dict[str, Tensor]) -> Tensor:
        """LeRobot's inference path; images uint8 [B, H, W, 3] as a camera gives them."""
        batch: dict[str, Any] = {STATE_INPUT: state}
        for key, frames in images.items():
            # What lerobot.policies.utils.prepare_observation_for_inference does.
            batch[key] = frames.to(torch.float32).div(255).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            chunk = self.policy.predict_action_chunk(self.preprocessor(batch))
            return self.postprocessor(chunk)


def load_policy(info: CheckpointInfo) -> LoadedPolicy:
    """Load weights and processors offline, on CPU, with no backbone download."""
    folder = str(info.path)
    captured = io.StringIO()
    try:
        # LeRobot prints progress to stdout; keep CLI output ours.
        with contextlib.redirect_stdout(captured):
            config = PreTrainedConfig.from_pretrained(folder)
            # The checkpoint's own weights replace ImageNet ones: never download them.
            config.pretrained_backbone_weights = None
            config.device = "cpu"
            policy = ACTPolicy.from_pretrained(folder, config=config, strict=True)
            pre, post = make_pre_post_processors(config, pretrained_path=folder)
    except ExportError:
        raise
    except Exception as exc:  # LeRobot/draccus/safetensors raise many types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"LeRobot could not load {folder}: {first}") from exc
    finally:
        if captured.getvalue().strip():
            logger.debug("lerobot: %s", captured.getvalue().strip())
    policy.eval()
    normalizer = next((s for s in pre.steps if isinstance(s, NormalizerProcessorStep)), None)
    unnormalizer = next((s for s in post.steps if isinstance(s, UnnormalizerProcessorStep)), None)
    if normalizer is None or unnormalizer is None:
        raise ExportError(f"missing normalization stats: no (un)normalizer step in {folder}")
    image_keys = tuple(policy.config.image_features)
    if image_keys != tuple(image_input(c) for c in info.cameras):
        raise ExportError(f"camera order in {folder} is inconsistent: {image_keys}")
    return LoadedPolicy(policy, pre, post, normalizer, unnormalizer, image_keys)


class ACTGraph(nn.Module):
    """forward(state, *frames) -> actions; the module torch.onnx traces."""

    def __init__(self, loaded: LoadedPolicy) -> None:
        super().__init__()
        self.model = loaded.policy.model
        self._normalizer = loaded.normalizer
        self._unnormalizer = loaded.unnormalizer
        self._image_keys = loaded.image_keys

    def forward(self, state: Tensor, *frames: Tensor) -> Tensor:
        norm = self._normalizer._apply_transform
        batch: dict[str, Any] = {STATE_INPUT: norm(state, STATE_INPUT, FeatureType.STATE)}
        images = []
        for key, raw in zip(self._image_keys, frames, strict=True):
            chw = raw.to(torch.float32).div(255).permute(0, 3, 1, 2)
            images.append(norm(chw, key, FeatureType.VISUAL))
        batch[OBS_IMAGES] = images
        actions = self.model(batch)[0]
        return self._unnormalizer._apply_transform(
            actions, ACTION_OUTPUT, FeatureType.ACTION, inverse=True
        )


def example_inputs(info: CheckpointInfo, batch: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Random, non-zero robot-like inputs: state first, then one frame per camera."""
    gen = torch.Generator().manual_seed(seed)
    state = torch.randn(batch, info.state_dim, generator=gen) * 2.0 + 0.5
    frames = [
        torch.randint(0, 256, (batch, *info.image_sizes[c], 3), generator=gen, dtype=torch.uint8)
        for c in info.cameras
    ]
    return (state, *frames)


def export_onnx(
    loaded: LoadedPolicy, info: CheckpointInfo, path: Path, opset: int = DEFAULT_OPSET
) -> None:
    """Trace the graph with a dynamic batch axis and write it to ``path``."""
    graph = ACTGraph(loaded).eval()
    names = [STATE_INPUT, *(image_input(c) for c in info.cameras)]
    dynamic = {n: {0: "batch"} for n in [*names, ACTION_OUTPUT]}
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python-side shape reads in ACT; shapes other than the batch
        # are fixed per model, and parity at two batch sizes checks the batch axis.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example_inputs(info, batch=2),
            str(path),
            input_names=names,
            output_names=[ACTION_OUTPUT],
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    _pin_output_shape(path, info.chunk_size, info.action_dim)


def _pin_output_shape(path: Path, chunk_size: int, action_dim: int) -> None:
    """Declare the output's chunk and action dims as fixed numbers.

    The tracer leaves them symbolic (they pass through broadcasting adds); Triton and
    clients read the signature, so it should say exactly what the model returns.
    """
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(list(dims)[1:], (chunk_size, action_dim), strict=True):
        dim.Clear()
        dim.dim_value = value
    onnx.save(model, str(path))
