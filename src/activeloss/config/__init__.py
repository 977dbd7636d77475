"""Settings: the run's own (:mod:`.settings`), the options each component declares
(:mod:`.options`), and the papers' protocols as presets (:mod:`.presets`)."""
from .options import DECLARED, NoOptions, Spec, declare, option, specs_of
from .settings import (
    CORE_NAMES,
    CORE_SPECS,
    EXECUTION_FIELDS,
    PROTOCOL_DEFAULTS,
    Settings,
    apply_preset,
    check_names,
    load_toml,
    overlay,
    preset_values,
    resolve,
    resolve_counts,
    settings_toml,
    spec_of,
    validate,
)

__all__ = [
    "CORE_NAMES", "CORE_SPECS", "DECLARED", "EXECUTION_FIELDS", "NoOptions", "PROTOCOL_DEFAULTS", "Settings", "Spec",
    "apply_preset", "check_names", "declare", "load_toml", "option", "overlay", "preset_values", "resolve",
    "resolve_counts", "settings_toml", "spec_of", "specs_of", "validate",
]
