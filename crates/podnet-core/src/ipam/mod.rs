//! Built-in IPAM: the validated address pool and the allocator's decisions.
//!
//! The on-disk store that makes these decisions crash-safe lives in
//! podnet-linux; here every operation is a pure state transition.

pub mod addr;
pub mod allocator;
pub mod pool;
pub mod reclaim;

pub use allocator::{Allocation, Attachment, IpamError, IpamState};
pub use pool::{Pool, Range, RangeConf, RangeSet};
