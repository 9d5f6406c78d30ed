//! demo subcommand (being written).
