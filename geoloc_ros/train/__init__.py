"""Training: one configuration (config.py) and one loop with exact resume, validation and DDP
(loop.py, checkpoints.py) for every model family (amcf.py: AMCF-Net; the retrieval family is
tools/train_retrieval.py), CSV + TensorBoard logs (logging.py). `geoloc-train` and
`geoloc-train-retrieval` are the command lines."""
from geoloc_ros.train.config import OptimConfig, SourceConfig, TrainConfig, load_train_config

__all__ = ["OptimConfig", "SourceConfig", "TrainConfig", "load_train_config"]
