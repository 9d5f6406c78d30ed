//! echo subcommand (being written).
