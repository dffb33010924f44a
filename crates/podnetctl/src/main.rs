//! `podnetctl`: the operator's CLI.

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "podnetctl", version, about = "Operate and measure podnet")]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Subcommand)]
enum Top {
    /// Benchmarks. They print medians and ratios; they never fail on numbers.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// ADD/DEL latency and concurrent throughput of the podnet plugin
    /// against the reference bridge + host-local plugins, measured in one
    /// run in throwaway namespaces.
    Cni {
        /// Sequential ADD+DEL cycles per plugin.
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Pods attached at once in the concurrent phase.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Concurrent rounds per plugin (the median is reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// A short run for CI: 20 iterations, 1 round.
        #[arg(long)]
        quick: bool,
        /// The podnet plugin binary (default: next to podnetctl).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Where the reference plugins live.
        #[arg(long, default_value = "/usr/lib/cni")]
        reference_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Top::Bench {
            what:
                Bench::Cni {
                    iterations,
                    concurrency,
                    rounds,
                    quick,
                    plugin,
                    reference_dir,
                },
        } => bench::cni::run(bench::cni::Options {
            iterations: if quick {
                iterations.min(20)
            } else {
                iterations
            },
            concurrency,
            rounds: if quick { 1 } else { rounds.max(1) },
            plugin,
            reference_dir,
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podnetctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
