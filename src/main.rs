//! The `floodwatch` binary: parses the command line and hands it to the command it names
//! (src/commands/, one file each); a command's error is printed here and exits 1.

mod cli;
mod commands;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use commands::output::write_stdout;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => commands::replay::replay(*args),
        Command::Live(args) => commands::live::live(*args),
        Command::Collect(args) => commands::collect::collect(*args),
        Command::Report(args) => commands::report::report(*args),
        Command::Detect(args) => commands::cluster::detect_node(*args),
        Command::Synth(args) => commands::synth::synth_capture(args),
        Command::Config(_) => write_stdout(floodwatch::config::DEFAULT_CONFIG.as_bytes()),
        Command::Completions(args) => commands::docs::completions(args),
        Command::Man(args) => commands::docs::man_page(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("floodwatch: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
