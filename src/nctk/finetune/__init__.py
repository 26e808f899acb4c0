"""NC-guided fine-tuning (Li et al. 2023): linear probe, Layer FT, SCL FT, full FT."""

from nctk.finetune.auto_unit import UnitSelection, select_unit
from nctk.finetune.methods import METHODS, FineTuneNet
from nctk.finetune.sweep import format_table, scarcity, sweep
from nctk.finetune.train import FinetuneResult, TrainConfig, finetune
from nctk.finetune.units import Unit, find_units, resolve_unit

__all__ = ["METHODS", "FineTuneNet", "FinetuneResult", "TrainConfig", "Unit", "UnitSelection",
           "find_units", "finetune", "format_table", "resolve_unit", "scarcity",
           "select_unit", "sweep"]
