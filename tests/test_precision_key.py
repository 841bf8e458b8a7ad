"""``precision`` is the one key for the precision mode; the old spellings map onto it."""

import pytest

from bnn_lab.assembly import config_precision, stage_precision
from bnn_lab.errors import ConfigError


def cfg(precision=None, fp=False, weights_only=False):
    return {"precision": precision, "fp": fp, "binarize": {"policy": {"weights_only": weights_only}}}


def test_old_spellings_map_onto_precision():
    assert config_precision(cfg()) == "1w1a"
    assert config_precision(cfg("bwn")) == "bwn"
    assert config_precision(cfg(fp=True)) == "fp"
    assert config_precision(cfg(weights_only=True)) == "bwn"
    assert config_precision(cfg("fp", fp=True)) == "fp"
    assert stage_precision(0, {"mode": "soft"}) == "soft" and stage_precision(1, {"precision": "fp"}) == "fp"


def test_contradictions_and_unknown_values_are_clear_errors():
    with pytest.raises(ConfigError, match="fp=true .* contradicts precision=bwn"):
        config_precision(cfg("bwn", fp=True))
    with pytest.raises(
        ConfigError, match="unknown precision 'half'; valid precisions: fp, soft, binary_act, bwn, 1w1a"
    ):
        config_precision(cfg("half"))
    with pytest.raises(ConfigError, match="stage 2 sets mode=soft and precision=fp"):
        stage_precision(2, {"mode": "soft", "precision": "fp"})
    with pytest.raises(ConfigError, match="stage 0 needs precision"):
        stage_precision(0, {})
