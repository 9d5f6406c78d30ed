//! Flags -> subcommand -> library. Nothing else lives here.

use clap::Parser;

fn main() {
    let cli = capi_ws::cli::Cli::parse();
    let code = capi_ws::run_cli(cli);
    std::process::exit(code);
}
