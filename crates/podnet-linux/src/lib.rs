//! The thin imperative shell: it applies what the core decided.
//!
//! Everything here is synchronous, so the CNI plugin can use it without an
//! async runtime. A netlink socket opened inside a namespace stays bound to
//! it, so the thread only switches namespaces for the instant it takes to
//! open one (see [`netns`]).

pub mod failpoint;
pub mod files;
pub mod ipam_store;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod presence;
pub mod sysctl;
