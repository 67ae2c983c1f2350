//! `ricochet`: an RFC 862 echo server (`serve`) and a verifying echo client (`probe`).

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Ricochet: a correct, fast RFC 862 echo server and a verifying echo probe.
#[derive(Debug, Parser)]
#[command(name = "ricochet", version, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    // No doc comments here: they would replace the ones of the argument
    // structs, whose first paragraph is the short help (`-h`, the command
    // list) and whose whole text is the long help (`--help`, `help serve`).
    Serve(cli::serve::ServeArgs),
    Probe(cli::probe::ProbeArgs),
    Cert(cli::cert::CertArgs),
}

/// `ricochet generate DIR`: writes the man pages (DIR/man) and shell
/// completions (DIR/completions) of [`Cli`], for packagers (`cargo xtask
/// dist`). Parsed apart from [`Cli`] so that it appears in neither.
#[derive(Debug, Parser)]
#[command(name = "ricochet generate")]
struct Generate {
    /// Output directory.
    dir: std::path::PathBuf,
}

/// Ends the process on a command line clap refused (or `--help`,
/// `--version`): as clap prints it, except that a `serve` asked for JSON
/// logs (`--log-format json`) gets its usage error as one JSON record on
/// stderr, as every other line it writes there (a log collector parses it).
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    let informational = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
    if informational || !asks_for_json_logs(std::env::args_os()) {
        e.exit()
    }
    // Rendered without colour; one record, however many lines clap wrote;
    // whatever RUST_LOG says.
    let text = e.render().to_string();
    cli::log::json_error(text.trim_end());
    cli::log::finish();
    std::process::exit(e.exit_code())
}

/// Whether the command line is a `serve` with `--log-format json` (or
/// `--log-format=json`), whatever else in it clap refused.
fn asks_for_json_logs(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    args.get(1).is_some_and(|c| c == "serve")
        && (args
            .windows(2)
            .any(|w| w[0] == "--log-format" && w[1] == "json")
            || args.iter().any(|a| a == "--log-format=json"))
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "generate") {
        let args = Generate::parse_from(std::env::args_os().skip(1));
        return cli::generate::run(Cli::command(), &args.dir);
    }
    let mut command = Cli::command();
    if std::env::var_os("RICOCHET_IO").is_some_and(|v| v.is_empty()) {
        // Empty (`Environment=RICOCHET_IO=` in a unit) means unset, not
        // `--io` given without a value.
        command = command.mut_subcommand("serve", |s| s.mut_arg("io", |a| a.env(None)));
    }
    let matches = match command.try_get_matches() {
        Ok(matches) => matches,
        Err(e) => usage_error(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    let code = match cli.command {
        Command::Serve(mut args) => {
            if let Some(serve) = matches.subcommand_matches("serve") {
                args.given = cli::unused_options::given_options(serve);
            }
            cli::serve::run(args)
        }
        Command::Probe(mut args) => {
            if let Some(probe) = matches.subcommand_matches("probe") {
                args.given = cli::unused_options::given_options(probe);
            }
            cli::probe::run(args)
        }
        Command::Cert(args) => cli::cert::run(args),
    };
    // The lines still queued for stderr (a stalled stderr does not hold the exit).
    cli::log::finish();
    code
}

#[cfg(test)]
mod tests {
    use super::asks_for_json_logs;

    fn asks(args: &[&str]) -> bool {
        asks_for_json_logs(args.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn serve_with_log_format_json_asks_for_json_logs_whatever_else_is_wrong() {
        assert!(asks(&[
            "ricochet",
            "serve",
            "--log-format",
            "json",
            "--bogus"
        ]));
        assert!(asks(&["ricochet", "serve", "--bogus", "--log-format=json"]));
    }

    #[test]
    fn json_that_is_not_the_log_format_asks_for_nothing() {
        assert!(!asks(&[
            "ricochet",
            "serve",
            "--log-format",
            "text",
            "json"
        ]));
        assert!(!asks(&["ricochet", "serve", "--unix", "json", "--bogus"]));
        assert!(!asks(&[
            "ricochet",
            "serve",
            "--log-format",
            "text",
            "--bogus"
        ]));
    }

    #[test]
    fn other_commands_and_no_command_ask_for_nothing() {
        assert!(!asks(&["ricochet", "probe", "--log-format", "json"]));
        assert!(!asks(&["ricochet", "--log-format", "json"]));
        assert!(!asks(&["ricochet"]));
    }
}
