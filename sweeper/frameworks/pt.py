"""PyTorch backend: transformers' PyTorch classes on the CPU or a CUDA GPU.

Importing this module also imports ``transformers.modeling_utils``, the part of every PyTorch
model's import that does not depend on the model: the zygote pays it once per sweep, so no cell
pays it again (bench/ prints the import time).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import transformers
import transformers.modeling_utils  # noqa: F401 - see the module docstring

from ..config.schema import Config, Device
from ..record import Mode
from ..units import MIB
from . import (
    INFERENCE,
    Backend,
    CellError,
    NoForkAfterBuild,
    NoWeightsSnapshot,
    WeightsSnapshot,
    describe_config,
    plan_model,
)

__all__ = ["BACKEND", "PtBackend"]


class PtBackend(Backend):
    display_name = "PyTorch"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        if config.device.name is Device.cuda:
            if not torch.cuda.is_available():
                raise CellError(
                    "device=cuda but PyTorch sees no CUDA GPU (torch.cuda.is_available() is "
                    f"False; torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                    "run with device=cpu, or on a machine with a GPU and a CUDA build of torch"
                )
            self.device = torch.device("cuda", 0)
        else:
            self.device = torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self.allocated_at_reset_mib = 0.0  # set by gpu_memory_reset
        # The intra-op threads torch chose in this process (one per core unless told otherwise).
        self.default_threads = torch.get_num_threads()

    no_fork_reason = "a model on a CUDA device cannot be built before a fork (CUDA must not be "
    no_fork_reason += "initialised in a process that forks)"

    @property
    def fork_after_build(self) -> bool:
        # A CPU model built on one intra-op thread leaves no OpenMP pool behind, so a forked
        # child starts its own. CUDA must never be initialised before a fork.
        return not self.cuda

    def build_model(
        self, mode: Mode, for_fork: bool = False, weights: Optional[WeightsSnapshot] = None
    ) -> object:
        config, options = self.config, self.config.framework
        if weights is not None:
            raise NoWeightsSnapshot("PyTorch models are shared by forking after a build")
        if for_fork and not self.fork_after_build:
            raise NoForkAfterBuild(self.no_fork_reason)
        if for_fork:
            torch.set_num_threads(1)  # no OpenMP pool in the builder; after_fork restores it
        torch.manual_seed(config.seed)
        plan = plan_model(transformers, mode, config, tf=False)
        hf_config = plan.hf_config
        if options.torchscript:
            hf_config.torchscript = True
        model = plan.cls(hf_config).to(self.device)
        if options.fp16:
            model.half()
        model.eval() if mode == INFERENCE else model.train()
        self.plan, self.model = plan, model
        self.model_config = describe_config(hf_config)
        self.model_parameters = sum(p.numel() for p in model.parameters())
        return model

    def after_fork(self) -> None:
        torch.set_num_threads(self.default_threads)

    def make_step(self, mode: Mode) -> Callable[[], object]:
        config, model, plan = self.config, self.model, self.plan
        generator = torch.Generator().manual_seed(config.seed)
        input_ids = torch.randint(
            plan.vocab_size, (config.batch, config.seq), generator=generator
        ).to(self.device)
        args = plan.arguments(
            input_ids, lambda shape: torch.zeros(shape, dtype=torch.long, device=self.device)
        )

        if mode == INFERENCE:
            if config.framework.torchscript:
                with torch.no_grad():
                    model = torch.jit.trace(model, example_kwarg_inputs=args)

            def forward() -> object:
                with torch.no_grad():
                    return model(**args)

            return forward

        def train_step() -> object:
            outputs = model(**args)
            loss = getattr(outputs, "loss", None)
            loss = outputs[0] if loss is None else loss
            (loss.sum() if loss.dim() else loss).backward()
            return loss

        return train_step

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def info(self) -> Dict[str, object]:
        info: Dict[str, object] = {
            "framework_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "torch_intra_op_threads": torch.get_num_threads(),
            "torch_inter_op_threads": torch.get_num_interop_threads(),
            "cuda_build": torch.version.cuda,
        }
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            info.update(
                device_name=props.name,
                device_uuid=str(getattr(props, "uuid", "")),
                cudnn_version=torch.backends.cudnn.version(),
            )
        return info

    def gpu_memory_reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            # What the tensors hold when the calls start (weights, inputs, kept workspaces).
            self.allocated_at_reset_mib = torch.cuda.memory_allocated(self.device) / MIB

    def gpu_memory_peaks_mib(self) -> Dict[str, float]:
        if not self.cuda:
            return {}
        return {
            "torch_max_allocated_mib": torch.cuda.max_memory_allocated(self.device) / MIB,
            "torch_allocated_at_reset_mib": self.allocated_at_reset_mib,
            "torch_max_reserved_mib": torch.cuda.max_memory_reserved(self.device) / MIB,
            "torch_reserved_mib": torch.cuda.memory_reserved(self.device) / MIB,  # now
        }

    @staticmethod
    def is_oom(exc: BaseException) -> bool:
        if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
            return True
        # The CPU allocator raises a plain RuntimeError when malloc fails.
        return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


BACKEND = PtBackend
