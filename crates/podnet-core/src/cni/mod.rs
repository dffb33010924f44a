//! The CNI contract: environment, network config, results, errors, versions.

pub mod args;
pub mod config;
pub mod conflist;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

pub use config::NetConf;
pub use env::{Command, Env};
pub use error::{CniError, Code};
pub use result::CniResult;
pub use version::CniVersion;
