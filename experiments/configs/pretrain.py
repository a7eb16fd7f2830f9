"""Config of pretrain_main: base skill-effect model on the three tasks' training distributions.

Select a variant with --config=experiments/configs/pretrain.py:VARIANT, VARIANT one of default
(about ten minutes of data generation and training on 2 CPU cores) or tiny (seconds, for tests).

The model, loss, train and finetune sections are those of f2p.models.get_config(variant), so
train.fit reads this config as it is; `data` says what is generated, `eval` how it is measured.
"""

import ml_collections

from f2p.models import get_config as model_config


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    if variant not in ("default", "tiny"):
        raise ValueError(f"config variant: unknown {variant!r}; allowed: default, tiny")
    config = model_config(variant)

    data = config.data = ml_collections.ConfigDict()
    data.tasks = "tabletop,transport,packing"  # comma-separated registered task names
    data.object_counts = "3,5"  # movable objects per scene; 7 stays unseen (generalisation)
    data.num_train = 3000  # transitions attempted per task, training distribution
    data.num_eval = 300  # attempted per task and held-out split (in-distribution and OOD)
    data.shard_size = 250  # transitions per shard: the unit of resumption
    data.num_points = 128  # points per object (DESIGN section 3)
    data.noise_level = 0.0  # perception noise of the recorded point clouds, in [0, 1]
    data.train_seed = 0  # generation seed of the training data
    data.eval_seed = 2  # held-out splits (differs from train_seed; 1 hits a packing LayoutError)
    data.num_workers = 2  # simulator worker processes

    evaluation = config.eval = ml_collections.ConfigDict()
    evaluation.batch_size = 64
    evaluation.key_relations = "inside,above,contact"  # relations the goals are made of

    config.train.num_steps = 4000
    config.export_dir = ""  # when set, the trained params + config are exported there

    if variant == "tiny":
        data.object_counts = "3"
        data.num_train = 6
        data.num_eval = 3
        data.shard_size = 3
        data.num_points = 32
        data.num_workers = 1  # in-process: no worker start-up
        evaluation.batch_size = 4
        config.train.num_steps = 6
    return config
