//! Logs go to stderr (warnings and errors) and, if the config names one, to
//! a log file (everything at info and above). Never to stdout: that carries
//! only the result.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

pub fn init(log_file: Option<&Path>) {
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_filter(LevelFilter::WARN);
    let file = log_file.and_then(|path| {
        let f = OpenOptions::new().create(true).append(true).open(path);
        match f {
            Ok(f) => Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(f))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(LevelFilter::INFO),
            ),
            Err(e) => {
                eprintln!("podnet: cannot open logFile {}: {e}", path.display());
                None
            }
        }
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init();
}
