//! Raw serde mirror of the config file (filled in by the config capability).
