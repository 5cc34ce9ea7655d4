"""Training AMCF-Net: configuration (config.py), the loop with resumable checkpoints (loop.py),
CSV + TensorBoard logs (logging.py). `geoloc-train` (tools/train.py) is the command line."""
from geoloc_ros.train.config import OptimConfig, SourceConfig, TrainConfig, load_train_config

__all__ = ["OptimConfig", "SourceConfig", "TrainConfig", "load_train_config"]
