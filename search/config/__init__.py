"""Study files (search/studies/*.toml, or any path) -> frozen dataclasses, validated at load time.

Every mistake names the file and the key: "`<key>` must be <constraint> but got <value>".
Every number is finite and inside the bounds that make it meaningful; where a larger value
could hang a machine or overflow (epochs, trials, batch size, width, subset, lr) the bound is
in LIMITS, and a study file raises one knowingly in its `[limits]` table.
A study file is trusted input (`function` names code that runs); its values are not.

- search.config.settings: the dataclasses a loaded study is made of.
- search.config.limits: what each objective setting must be, and the limits.
- search.config.tables: reading and checking the TOML tables.
- search.config.load: locating, reading and loading a study file; importing its objective and
  reading what it declares (the options it reads, that it scores `cfg.holdout`).
"""

from search.config.limits import LIMITS, LR_FLOOR, MAX_SEED, MIN_SUBSET
from search.config.load import (
    MAX_FILE_BYTES,
    MAX_NAME,
    STUDIES_DIR,
    check_holdout,
    check_study_name,
    declared_options,
    load_objective,
    load_study,
    study_names,
)
from search.config.settings import (
    DEFAULT_OBJECTIVE,
    ContestConfig,
    ParamSpec,
    PrunerConfig,
    SamplerConfig,
    SpaceConfig,
    StudyConfig,
    WorkersConfig,
)

__all__ = [
    "ContestConfig",
    "DEFAULT_OBJECTIVE",
    "LIMITS",
    "LR_FLOOR",
    "MAX_FILE_BYTES",
    "MAX_NAME",
    "MAX_SEED",
    "MIN_SUBSET",
    "STUDIES_DIR",
    "ParamSpec",
    "PrunerConfig",
    "SamplerConfig",
    "SpaceConfig",
    "StudyConfig",
    "WorkersConfig",
    "check_holdout",
    "check_study_name",
    "declared_options",
    "load_objective",
    "load_study",
    "study_names",
]
