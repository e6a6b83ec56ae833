"""Settings: one frozen, typed object per process (defaults < file < env < flags).

The model lives in :mod:`reproq.config.settings`, loading in :mod:`reproq.config.load`
(reading the layers: :mod:`reproq.config.layers`, :mod:`reproq.config.document`) and
rendering in :mod:`reproq.config.show`; the public names are re-exported here.
"""

from reproq.config.layers import Flag
from reproq.config.load import (
    CONFIG_FILE_NAMES,
    check_file,
    django_project,
    load_settings,
    resolve_config_path,
)
from reproq.config.settings import (
    ENV_VARS,
    BeatSettings,
    DatabaseSettings,
    ExecutorKind,
    LoggingSettings,
    MetricsSettings,
    MisfirePolicy,
    MockOptions,
    PayloadMode,
    PoolOptions,
    PoolSettings,
    ProcessOptions,
    QueueSettings,
    RateLimitSettings,
    ScheduleSettings,
    Settings,
    SubprocessOptions,
    ThreadOptions,
    WorkerSettings,
    default_data_dir,
)
from reproq.config.show import show_settings
from reproq.config.starter import starter_config

__all__ = [
    "CONFIG_FILE_NAMES",
    "ENV_VARS",
    "BeatSettings",
    "DatabaseSettings",
    "ExecutorKind",
    "Flag",
    "LoggingSettings",
    "MetricsSettings",
    "MisfirePolicy",
    "MockOptions",
    "PayloadMode",
    "PoolOptions",
    "PoolSettings",
    "ProcessOptions",
    "QueueSettings",
    "RateLimitSettings",
    "ScheduleSettings",
    "Settings",
    "SubprocessOptions",
    "ThreadOptions",
    "WorkerSettings",
    "check_file",
    "default_data_dir",
    "django_project",
    "load_settings",
    "resolve_config_path",
    "show_settings",
    "starter_config",
]
