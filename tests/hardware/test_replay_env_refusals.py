"""A session's env settings are refused naming the config key, before anything runs."""

from __future__ import annotations

import pytest

from pulsecal.agents.pipelines.replay_env import session_env_instance
from pulsecal.configs.schema import ConfigError


def test_an_env_that_is_not_a_calibration_is_refused_listing_the_ones_that_are():
    with pytest.raises(ValueError, match=r"PulseShaping-v0' is not a calibration env .*GateCalibration-v1"):
        session_env_instance("pulsecal/PulseShaping-v0", {})


def test_an_unknown_env_option_names_env_key_and_the_options():
    with pytest.raises(ConfigError, match=r"env\.shot_budgett.*allowed \[.*'shot_budget'"):
        session_env_instance("pulsecal/GateCalibration-v0", {"shot_budgett": 5})


def test_an_unknown_device_preset_names_env_device():
    with pytest.raises(ConfigError, match=r"env\.device.*'no_such' is unknown"):
        session_env_instance("pulsecal/GateCalibration-v0", {"device": "no_such"})
