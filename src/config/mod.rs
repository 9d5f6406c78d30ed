//! Configuration: YAML file with CAPI's key names (DESIGN §4) -> raw mirror (`file.rs`) ->
//! validated [`Settings`] (`settings.rs`) -> command-line overrides. Unknown keys are tolerated
//! and listed; wrong types or values of used keys are errors naming the key (exit 2).

pub mod file;
pub mod settings;

pub use settings::*;
