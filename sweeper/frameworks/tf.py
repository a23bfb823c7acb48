"""TensorFlow backend: transformers' TF classes (Keras 2 via tf-keras) on the CPU or a GPU.

Importing this module also imports ``transformers.modeling_tf_utils``, the part of every TF
model's import that does not depend on the model: the zygote pays it once per sweep, so no cell
pays it again.

A model cannot be built before a fork (its runtime's thread pools would be missing in the
child), so each cell builds its own; what a build costs is mostly drawing the random weights
(1.5 of 1.8 s for bert-base here). The zygote therefore has one process per model build it and
write the initial weights to a memory file (:meth:`TfBackend.save_weights`), and every cell's
build takes them from there (``build_model(weights=...)``): the same variables, in the same
order, with the same values, in memory of TensorFlow's own allocator.
"""

from __future__ import annotations

import contextlib
import functools
import math
import mmap
import os
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import tensorflow as tf
import transformers
import transformers.modeling_tf_utils  # noqa: F401 - see the module docstring

from ..config.schema import Config, Device
from ..record import Mode
from ..units import MIB
from . import (
    INFERENCE,
    Backend,
    CellError,
    NoForkAfterBuild,
    WeightsSnapshot,
    describe_config,
    plan_model,
)

__all__ = ["BACKEND", "TfBackend"]


class TfBackend(Backend):
    display_name = "Tensorflow"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        gpus = tf.config.list_physical_devices("GPU")
        if config.device.name is Device.cuda:
            if not gpus:
                raise CellError(
                    "device=cuda but TensorFlow sees no GPU (tf.config.list_physical_devices"
                    f"('GPU') is empty; tensorflow {tf.__version__}); run with device=cpu, or "
                    "on a machine with a GPU and a CUDA build of TensorFlow"
                )
            # Without this TF reserves nearly all GPU memory up front and every peak reads "full".
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
            self.device_name = "GPU:0"
        else:
            self.device_name = "CPU:0"
        self.gpu = self.device_name.startswith("GPU")
        self.current_at_reset_mib = 0.0  # set by gpu_memory_reset

    # fork_after_build stays False: building (even constructing) a Keras model starts
    # TensorFlow's runtime thread pools, and a child forked after that waits on them forever.
    no_fork_reason = (
        "TensorFlow models cannot be built before a fork: constructing one starts the "
        "runtime's thread pools, and a child forked after that hangs"
    )

    weights_snapshots = True

    def weights_snapshot_refusal(self) -> Optional[str]:
        if self.gpu:
            return "on a GPU each TensorFlow cell draws its own weights (untested there)"
        return None

    def build_model(
        self, mode: Mode, for_fork: bool = False, weights: Optional[WeightsSnapshot] = None
    ) -> object:
        if for_fork:
            raise NoForkAfterBuild(self.no_fork_reason)
        config = self.config
        tf.keras.utils.set_random_seed(config.seed)
        plan = plan_model(transformers, mode, config, tf=True)
        with tf.device(self.device_name), _variables(weights) as created:
            model = plan.cls(plan.hf_config)
            model.build_in_name_scope()  # create the weights now, not in the first timed call
        self.plan, self.model, self.variables = plan, model, created
        self.model_config = describe_config(plan.hf_config)
        self.model_parameters = int(model.count_params())
        return model

    def save_weights(self, fd: int) -> WeightsSnapshot:
        entries = []
        offset = 0
        for variable in self.variables:
            array = np.ascontiguousarray(variable.numpy())
            _write_all(fd, memoryview(array.reshape(-1).view(np.uint8)), offset)
            shape = [int(n) for n in variable.shape]
            entries.append((variable.name, shape, variable.dtype.name, offset, array.nbytes))
            offset += -(-array.nbytes // mmap.ALLOCATIONGRANULARITY) * mmap.ALLOCATIONGRANULARITY
        return WeightsSnapshot(fd=fd, variables=entries)

    def make_step(self, mode: Mode) -> Callable[[], object]:
        config, options, model, plan = self.config, self.config.framework, self.model, self.plan
        with tf.device(self.device_name):
            input_ids = tf.random.uniform(
                (config.batch, config.seq),
                maxval=plan.vocab_size,
                dtype=tf.int32,
                seed=config.seed,
            )
            args = plan.arguments(input_ids, lambda shape: tf.zeros(shape, dtype=tf.int32))
        ids = args.pop("input_ids")  # Keras takes the first input positionally

        if mode == INFERENCE:

            def step() -> object:
                return model(ids, training=False, **args)

        else:

            def step() -> object:
                with tf.GradientTape() as tape:
                    outputs = model(ids, training=True, **args)
                    loss = getattr(outputs, "loss", None)
                    loss = outputs[0] if loss is None else loss
                return tape.gradient(loss, model.trainable_variables)

        if not options.eager_mode:
            step = tf.function(step, jit_compile=options.use_xla)

        def run() -> object:
            with tf.device(self.device_name):
                return step()

        return run

    def sync(self) -> None:
        # Waits for every op queued on every device (TF >= 2.12).
        tf.test.experimental.sync_devices()

    def info(self) -> Dict[str, object]:
        info: Dict[str, object] = {
            "framework_version": tf.__version__,
            "transformers_version": transformers.__version__,
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tf_threads_note": "0 = TensorFlow chooses (one per core)",
            "cuda_build": tf.sysconfig.get_build_info().get("cuda_version"),
        }
        if self.gpu:
            details = tf.config.experimental.get_device_details(
                tf.config.list_physical_devices("GPU")[0]
            )
            info["device_name"] = details.get("device_name")
        return info

    def gpu_memory_reset(self) -> None:
        if self.gpu:
            tf.config.experimental.reset_memory_stats(self.device_name)
            # What the tensors hold when the calls start (weights, inputs).
            current = tf.config.experimental.get_memory_info(self.device_name)["current"]
            self.current_at_reset_mib = current / MIB

    def gpu_memory_peaks_mib(self) -> Dict[str, float]:
        if not self.gpu:
            return {}
        peak = tf.config.experimental.get_memory_info(self.device_name)["peak"]
        return {"tf_peak_mib": peak / MIB, "tf_current_at_reset_mib": self.current_at_reset_mib}

    @staticmethod
    def is_oom(exc: BaseException) -> bool:
        return isinstance(exc, (MemoryError, tf.errors.ResourceExhaustedError))


@contextlib.contextmanager
def _variables(weights: Optional[WeightsSnapshot]) -> Iterator[List[tf.Variable]]:
    """Collect the variables a build creates, in order; with ``weights``, give each the
    snapshot's value instead of its initializer's (which draws random numbers: the slow part)."""
    created: List[tf.Variable] = []
    entries = iter(weights.variables) if weights is not None else None

    def creator(next_creator: Callable, **kwargs: object) -> tf.Variable:
        entry = None
        if entries is not None:
            entry = next(entries, None)
            if entry is None:
                raise _mismatch(f"the build creates more variables than the {len(created)} saved")
            _, shape, dtype, offset, nbytes = entry
            kwargs["initial_value"] = functools.partial(
                _read_value, weights.fd, shape, dtype, offset, nbytes
            )
        variable = next_creator(**kwargs)
        if entry is not None:
            found = (variable.name, [int(n) for n in variable.shape], variable.dtype.name)
            if found != tuple(entry[:3]):
                raise _mismatch(f"variable {len(created)} is {found}, saved as {tuple(entry[:3])}")
        created.append(variable)
        return variable

    with tf.variable_creator_scope(creator):
        yield created
    if entries is not None and next(entries, None) is not None:
        raise _mismatch(f"the build created {len(created)} variables, fewer than saved")


def _mismatch(what: str) -> CellError:
    return CellError(
        f"internal error: the weights snapshot does not fit this build ({what}); please report "
        "it, and run with share_build=false meanwhile"
    )


def _read_value(fd: int, shape: List[int], dtype: str, offset: int, nbytes: int) -> tf.Tensor:
    """One variable's initial value from the snapshot, in memory of TensorFlow's allocator."""
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    if nbytes == 0:
        return tf.constant(np.zeros(shape, np_dtype))
    # A read-only view of the snapshot's pages (no copy; unmapped as soon as it is dropped, so
    # the build leaves nothing behind but the variables), copied once where a drawn value goes.
    view = mmap.mmap(
        fd, nbytes, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ, offset=offset
    )
    array = np.frombuffer(view, np_dtype, math.prod(shape)).reshape(shape)
    return tf.raw_ops.DeepCopy(x=array)  # TensorFlow would alias the mapping without the copy


# Map every page at once rather than one fault per page (Linux).
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def _write_all(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


BACKEND = TfBackend
