"""TensorFlow backend: transformers' TF classes (Keras 2 via tf-keras) on the CPU or a GPU.

Importing this module also imports ``transformers.modeling_tf_utils``, the part of every TF
model's import that does not depend on the model: the zygote pays it once per sweep, so no cell
pays it again.
"""

from __future__ import annotations

from typing import Callable, Dict

import tensorflow as tf
import transformers
import transformers.modeling_tf_utils  # noqa: F401 - see the module docstring

from ..config.schema import Config, Device
from ..record import Mode
from ..units import MIB
from . import INFERENCE, Backend, CellError, NoForkAfterBuild, describe_config, plan_model

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

    # fork_after_build stays False: building (even constructing) a Keras model starts
    # TensorFlow's runtime thread pools, and a child forked after that waits on them forever.
    no_fork_reason = (
        "TensorFlow models cannot be built before a fork: constructing one starts the "
        "runtime's thread pools, and a child forked after that hangs"
    )

    def build_model(self, mode: Mode, for_fork: bool = False) -> object:
        if for_fork:
            raise NoForkAfterBuild(self.no_fork_reason)
        config = self.config
        tf.keras.utils.set_random_seed(config.seed)
        plan = plan_model(transformers, mode, config, tf=True)
        with tf.device(self.device_name):
            model = plan.cls(plan.hf_config)
            model.build_in_name_scope()  # create the weights now, not in the first timed call
        self.plan, self.model = plan, model
        self.model_config = describe_config(plan.hf_config)
        self.model_parameters = int(model.count_params())
        return model

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

    def gpu_memory_peaks_mib(self) -> Dict[str, float]:
        if not self.gpu:
            return {}
        peak = tf.config.experimental.get_memory_info(self.device_name)["peak"]
        return {"tf_peak_mib": peak / MIB}

    @staticmethod
    def is_oom(exc: BaseException) -> bool:
        return isinstance(exc, (MemoryError, tf.errors.ResourceExhaustedError))


BACKEND = TfBackend
