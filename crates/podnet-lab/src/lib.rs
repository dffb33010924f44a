//! The lab: a multi-node podnet cluster of network namespaces on one
//! machine, with real agents and the real plugin; its probes and status;
//! and the benchmarks, which run on it.
//!
//! ```text
//!  pod ns ─veth─ node ns (podnetd, bridge podnet0) ─eth0─┐
//!  pod ns ─veth─ node ns (podnetd, bridge podnet0) ─eth0─┼─ fabric ns (bridge fab0)
//!                           external ns (192.168.1.254) ─┘
//! ```
//!
//! Everything it makes (namespaces, agent PIDs, store, run dirs) is
//! recorded in `<dir>/lab.json`, so `down` can remove it all.
//!
//! The modules depend one way: `inside` and `topology` on nothing of the
//! lab's; `record` on them; `plumbing` on `record`; the lab's stores
//! (`etcd`, `kube`), `probe`, `policy`, `status` and `check` on those; `up` on all
//! of them; `bench` on `up`.

pub mod bench;
pub mod check;
pub mod etcd;
pub mod inside;
pub mod kube;
pub mod plumbing;
pub mod policy;
pub mod probe;
pub mod record;
pub mod status;
pub mod topology;
pub mod up;

pub const DEFAULT_DIR: &str = "/run/podnet-lab";
