"""jinit: weight initialization for JAX and Flax.

Public names are re-exported here; the logic lives in ``jinit._src``.
"""

# One sorted block of re-exports (ruff keeps it sorted); the logic lives in jinit._src.
from jinit._src import theory as theory
from jinit._src.checks import InitWarning as InitWarning
from jinit._src.datadep.between_layer import BetweenLayerReport as BetweenLayerReport
from jinit._src.datadep.between_layer import between_layer_scaling as between_layer_scaling
from jinit._src.datadep.capture import lsuv_layer as lsuv_layer
from jinit._src.datadep.lsuv import lsuv as lsuv
from jinit._src.datadep.per_unit import weight_norm_init as weight_norm_init
from jinit._src.datadep.per_unit import within_layer_init as within_layer_init
from jinit._src.datadep.report import LSUVReport as LSUVReport
from jinit._src.diagnostics.findings import Finding as Finding
from jinit._src.diagnostics.findings import diagnose as diagnose
from jinit._src.diagnostics.findings import layer_order as layer_order
from jinit._src.diagnostics.stats import activation_stats as activation_stats
from jinit._src.diagnostics.stats import layer_statistics as layer_statistics
from jinit._src.dynamic.gradinit import gradinit as gradinit
from jinit._src.dynamic.metainit import metainit as metainit
from jinit._src.dynamic.report import GradInitReport as GradInitReport
from jinit._src.dynamic.report import MetaInitReport as MetaInitReport
from jinit._src.fans import compute_fans as compute_fans
from jinit._src.fixup import fixup as fixup
from jinit._src.fixup import fixup_scale as fixup_scale
from jinit._src.gains import calculate_gain as calculate_gain
from jinit._src.gains import compute_gain as compute_gain
from jinit._src.initializers import COMPLEX_TRUNCATED_NORMAL_STD as COMPLEX_TRUNCATED_NORMAL_STD
from jinit._src.initializers import TRUNCATED_NORMAL_STD as TRUNCATED_NORMAL_STD
from jinit._src.initializers import Initializer as Initializer
from jinit._src.initializers import constant as constant
from jinit._src.initializers import delta_orthogonal as delta_orthogonal
from jinit._src.initializers import glorot_normal as glorot_normal
from jinit._src.initializers import glorot_uniform as glorot_uniform
from jinit._src.initializers import he_normal as he_normal
from jinit._src.initializers import he_uniform as he_uniform
from jinit._src.initializers import kaiming_normal as kaiming_normal
from jinit._src.initializers import kaiming_uniform as kaiming_uniform
from jinit._src.initializers import lecun_normal as lecun_normal
from jinit._src.initializers import lecun_uniform as lecun_uniform
from jinit._src.initializers import lsuv_ready_orthogonal as lsuv_ready_orthogonal
from jinit._src.initializers import normal as normal
from jinit._src.initializers import ones as ones
from jinit._src.initializers import orthogonal as orthogonal
from jinit._src.initializers import truncated_normal as truncated_normal
from jinit._src.initializers import uniform as uniform
from jinit._src.initializers import uniform_symmetric as uniform_symmetric
from jinit._src.initializers import variance_scaling as variance_scaling
from jinit._src.initializers import xavier_normal as xavier_normal
from jinit._src.initializers import xavier_uniform as xavier_uniform
from jinit._src.initializers import zeros as zeros
from jinit._src.initializers_structured import conv_orthogonal as conv_orthogonal
from jinit._src.initializers_structured import dirac as dirac
from jinit._src.initializers_structured import eye as eye
from jinit._src.initializers_structured import identity as identity
from jinit._src.initializers_structured import sparse as sparse
from jinit._src.initializers_structured import zero_hadamard as zero_hadamard
from jinit._src.isometry import jacobian_singular_values as jacobian_singular_values
from jinit._src.isometry import mlp_jacobian_singular_values as mlp_jacobian_singular_values
from jinit._src.isometry import spectrum_stats as spectrum_stats
from jinit._src.paths import path_hash as path_hash
from jinit._src.paths import path_key as path_key
from jinit._src.paths import path_string as path_string
from jinit._src.presets import PRESETS as PRESETS
from jinit._src.presets import Preset as Preset
from jinit._src.presets import flax_default_kernel as flax_default_kernel
from jinit._src.presets import flax_embedding as flax_embedding
from jinit._src.presets import get_preset as get_preset
from jinit._src.presets import haiku_default_kernel as haiku_default_kernel
from jinit._src.presets import haiku_embedding as haiku_embedding
from jinit._src.presets import haiku_variance_scaling as haiku_variance_scaling
from jinit._src.presets import keras_lstm_bias as keras_lstm_bias
from jinit._src.presets import keras_random_normal as keras_random_normal
from jinit._src.presets import keras_random_uniform as keras_random_uniform
from jinit._src.presets import keras_truncated_normal as keras_truncated_normal
from jinit._src.presets import keras_variance_scaling as keras_variance_scaling
from jinit._src.presets import torch_default_bias as torch_default_bias
from jinit._src.presets import torch_default_kernel as torch_default_kernel
from jinit._src.presets import torch_embedding as torch_embedding
from jinit._src.presets import torch_kaiming_normal as torch_kaiming_normal
from jinit._src.presets import torch_kaiming_uniform as torch_kaiming_uniform
from jinit._src.presets import torch_orthogonal as torch_orthogonal
from jinit._src.presets import torch_rnn_uniform as torch_rnn_uniform
from jinit._src.presets import torch_trunc_normal as torch_trunc_normal
from jinit._src.presets import torch_xavier_normal as torch_xavier_normal
from jinit._src.presets import torch_xavier_uniform as torch_xavier_uniform
from jinit._src.recommend import Recommendation as Recommendation
from jinit._src.recommend import edge_of_chaos as edge_of_chaos
from jinit._src.recommend import recommend as recommend
from jinit._src.reinit import reinit as reinit
from jinit._src.training.fit import EpochResult as EpochResult
from jinit._src.training.fit import NonFiniteError as NonFiniteError
from jinit._src.training.fit import fit as fit
from jinit._src.training.programs import Programs as Programs
from jinit._src.training.programs import compile_programs as compile_programs
from jinit._src.training.programs import default_stepping as default_stepping
from jinit._src.training.programs import default_strategy as default_strategy
from jinit._src.training.step import TrainState as TrainState
from jinit._src.training.step import epoch_indices as epoch_indices
from jinit._src.training.step import init_state as init_state
from jinit._src.training.step import make_evaluate as make_evaluate
from jinit._src.training.step import make_train_chunk as make_train_chunk
from jinit._src.training.step import make_train_step as make_train_step
from jinit._src.training.sweep import init_models as init_models
from jinit._src.training.sweep import model_mesh as model_mesh
from jinit._src.training.sweep import pad_models as pad_models
from jinit._src.training.sweep import padded_size as padded_size
from jinit._src.training.sweep import seed_keys as seed_keys
from jinit._src.training.sweep import shard_models as shard_models

__version__ = "0.1.0"

# Every public name imported above (keep this last: names imported after it are not public).
__all__ = sorted(n for n in dir() if not n.startswith("_"))
