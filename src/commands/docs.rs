//! What is generated from the clap definition itself: shell completions and man pages, so they
//! cannot drift from `--help`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::output::write_stdout;
use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// `floodwatch completions SHELL`: the script on stdout.
pub(crate) fn completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "floodwatch", &mut script);
    write_stdout(&script)
}

/// `floodwatch man [SUBCOMMAND]`: the roff page on stdout.
pub(crate) fn man_page(a: ManArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match &a.subcommand {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name).cloned() else {
                let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
                cmd.error(
                    clap::error::ErrorKind::InvalidValue,
                    format!("no subcommand `{name}` (one of: {})", names.join(", ")),
                )
                .exit();
            };
            sub.name(format!("floodwatch-{name}"))
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("rendering the man page")?;
    write_stdout(&roff)
}
