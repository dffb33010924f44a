//! Failpoints for the crash tests. Built with feature `failpoints` (the
//! test build; release builds never enable it), a process whose
//! `PODNET_FAILPOINT` names a point kills itself with SIGKILL on reaching
//! it: the crash arrives exactly between two real steps. Without the
//! feature, [`hit`] is empty.

// A release binary that an environment variable can kill is a liability:
// the feature is for test builds only, which have debug assertions.
#[cfg(all(feature = "failpoints", not(debug_assertions)))]
compile_error!(
    "feature `failpoints` is for test builds: a release build (no debug assertions) must not enable it"
);

/// The environment variable that arms one failpoint.
pub const ENV: &str = "PODNET_FAILPOINT";

/// Whether this build has failpoints.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Dies here if `name` is armed.
#[inline]
pub fn hit(name: &str) {
    #[cfg(feature = "failpoints")]
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        eprintln!("failpoint {name}: SIGKILL");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    let _ = name;
}
