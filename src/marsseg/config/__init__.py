"""One frozen dataclass tree: named presets, `--set key=value` overrides, saved with every run.

cfg = preset("cpu")
cfg = override(cfg, ["stage1.train.epochs=5", "post.tta=off"])
save_config(validate(cfg), run_dir / "config.json")

The package draws its imports one way: `fields` (a field with its rule) <- `schema` (the fields) <- `keys`
(dotted keys, `--set`) and `store` (config.json) <- `presets` and `validation`; this module re-exports them.
`reference` (the tables `marsseg config` prints and writes into the docs) is imported only by the CLI.
"""

from dataclasses import replace as replace

from marsseg.config.fields import either as either
from marsseg.config.fields import rule_of as rule_of
from marsseg.config.fields import rules_of as rules_of
from marsseg.config.keys import allowed as allowed
from marsseg.config.keys import flatten as flatten
from marsseg.config.keys import key as key
from marsseg.config.keys import keys as keys
from marsseg.config.keys import model_variants as model_variants
from marsseg.config.keys import override as override
from marsseg.config.presets import PRESET_SPECS as PRESET_SPECS
from marsseg.config.presets import PRESETS as PRESETS
from marsseg.config.presets import preset as preset
from marsseg.config.schema import LOSS_TERMS as LOSS_TERMS
from marsseg.config.schema import POST_SETTINGS as POST_SETTINGS
from marsseg.config.schema import AugmentConfig as AugmentConfig
from marsseg.config.schema import CanaryConfig as CanaryConfig
from marsseg.config.schema import CleanConfig as CleanConfig
from marsseg.config.schema import Config as Config
from marsseg.config.schema import DataConfig as DataConfig
from marsseg.config.schema import LossConfig as LossConfig
from marsseg.config.schema import ModelConfig as ModelConfig
from marsseg.config.schema import PostConfig as PostConfig
from marsseg.config.schema import SelfTrainConfig as SelfTrainConfig
from marsseg.config.schema import StageConfig as StageConfig
from marsseg.config.schema import SubmissionConfig as SubmissionConfig
from marsseg.config.schema import TrainConfig as TrainConfig
from marsseg.config.schema import dilation_rates as dilation_rates
from marsseg.config.schema import loss_terms as loss_terms
from marsseg.config.store import load_config as load_config
from marsseg.config.store import save_config as save_config
from marsseg.config.store import to_dict as to_dict
from marsseg.config.validation import validate_config


def validate(cfg: Config) -> Config:
    """Refuse settings no run can use, before anything is written or TensorFlow is imported; returns `cfg`."""
    return validate_config(cfg)
