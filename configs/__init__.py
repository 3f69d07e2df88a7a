"""Hydra configuration of pulsecal training runs, shipped as package data.

The YAML groups under this package (``env/``, ``device/``, ``agent/``, ``callbacks/``,
``logger/``, ``experiment/``, ``hparams_search/``, ``hydra/launcher/``) are found by
``config_path="pkg://pulsecal.configs"`` from any working directory. Importing the
package registers the typed schemas each group starts from (``schema.py``; the per-env
options in ``env_schema.py``), so compose-time type checks work for the console script
and the compose API alike.
"""

from pulsecal.configs.schema import ConfigError, register_configs, register_resolvers

register_configs()
register_resolvers()

__all__ = ["ConfigError", "register_configs", "register_resolvers"]
