"""``precision`` is the one key for the precision; the spellings of earlier versions are refused
in one line naming it."""

import pytest

from bnn_lab.assembly import config_precision, stage_precision, stored_precision
from bnn_lab.assembly.old_spellings import refuse_old_spelling
from bnn_lab.errors import ConfigError


def test_precision_of_a_run_and_of_a_stage():
    assert config_precision({"precision": None}) == "1w1a"
    assert config_precision({"precision": "bwn"}) == "bwn"
    assert stage_precision(1, {"precision": "fp"}) == "fp"
    # files written by earlier versions recorded it as "mode"
    assert stored_precision({"precision": "bwn"}) == stored_precision({"mode": "bwn"}) == "bwn"
    assert stored_precision({}, "fp") == "fp"


def test_old_spellings_and_unknown_values_are_one_line_errors():
    with pytest.raises(ConfigError, match="fp is no longer a key: write precision=fp"):
        refuse_old_spelling("fp")
    with pytest.raises(ConfigError, match="binarize.policy.weights_only is no longer a key: write precision=bwn"):
        refuse_old_spelling("+binarize.policy.weights_only")
    refuse_old_spelling("precision")  # the key itself passes
    with pytest.raises(ConfigError, match="stage 0 sets mode: soft; the key is precision: write precision: soft"):
        stage_precision(0, {"mode": "soft"})
    with pytest.raises(
        ConfigError, match="unknown precision 'half'; valid precisions: fp, soft, binary_act, bwn, 1w1a"
    ):
        config_precision({"precision": "half"})
    with pytest.raises(ConfigError, match="stage 0 needs precision"):
        stage_precision(0, {})
