"""What the studies share, one concern per module; every name is re-exported here.

- ``cli``: argparse types that name the bad flag, the shared flags of studies and papers.
- ``records``: the results file (strict JSON, atomic) and its stamp, :func:`environment`.
- ``checkpoints``: orbax checkpoints after every epoch, for resumable studies.
- ``sweep``: seed sweeps over initializers as one program, their results and plots.
- ``small_nets``: many small models trained as one vmapped program (the paper reproductions).
- ``claims``: a paper's claims with criteria fixed before the run, and their results file.
- ``plots``: matplotlib on Agg.
- ``intervals``: seed-to-seed spread (Student-t intervals) and rankings that hold over seeds.

Nothing here is part of the library: the studies are thin scripts over ``jinit``.
"""

from experiments.common.checkpoints import EpochCheckpoints as EpochCheckpoints
from experiments.common.claims import Claim as Claim
from experiments.common.claims import finish as finish
from experiments.common.cli import STUDY_FLAGS as STUDY_FLAGS
from experiments.common.cli import add_sweep_args as add_sweep_args
from experiments.common.cli import base_parser as base_parser
from experiments.common.cli import check_host_devices as check_host_devices
from experiments.common.cli import existing_dir as existing_dir
from experiments.common.cli import fraction as fraction
from experiments.common.cli import name_list as name_list
from experiments.common.cli import nonnegative_float as nonnegative_float
from experiments.common.cli import nonnegative_int as nonnegative_int
from experiments.common.cli import paper_parser as paper_parser
from experiments.common.cli import positive_int as positive_int
from experiments.common.cli import seed_list as seed_list
from experiments.common.cli import writable_dir as writable_dir
from experiments.common.intervals import format_interval as format_interval
from experiments.common.intervals import paired_ranking as paired_ranking
from experiments.common.intervals import seed_interval as seed_interval
from experiments.common.plots import plot_curves as plot_curves
from experiments.common.plots import pyplot as pyplot
from experiments.common.plots import save as save
from experiments.common.records import config_hash as config_hash
from experiments.common.records import describe_machine as describe_machine
from experiments.common.records import environment as environment
from experiments.common.records import machine_of as machine_of
from experiments.common.records import strict_json as strict_json
from experiments.common.records import write_error as write_error
from experiments.common.records import write_json_atomic as write_json_atomic
from experiments.common.small_nets import DATA_STREAM as DATA_STREAM
from experiments.common.small_nets import INIT_STREAM as INIT_STREAM
from experiments.common.small_nets import LN10 as LN10
from experiments.common.small_nets import digits as digits
from experiments.common.small_nets import digits_source as digits_source
from experiments.common.small_nets import init_keys as init_keys
from experiments.common.small_nets import init_mlp as init_mlp
from experiments.common.small_nets import minibatch_indices as minibatch_indices
from experiments.common.small_nets import smooth as smooth
from experiments.common.small_nets import softmax_loss as softmax_loss
from experiments.common.small_nets import stack as stack
from experiments.common.small_nets import stream_keys as stream_keys
from experiments.common.small_nets import train_models as train_models
from experiments.common.sweep import WallClock as WallClock
from experiments.common.sweep import add_distributed_args as add_distributed_args
from experiments.common.sweep import init_distributed as init_distributed
from experiments.common.sweep import keras_split as keras_split
from experiments.common.sweep import model_keys as model_keys
from experiments.common.sweep import print_study as print_study
from experiments.common.sweep import run_study as run_study
from experiments.common.sweep import run_sweep as run_sweep
