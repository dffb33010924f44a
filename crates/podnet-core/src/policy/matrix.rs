//! Truth tables over pods, as upstream's e2e suite prints them: which
//! ordered pod pairs may connect on one protocol and port. The model
//! fills the expected one; probes fill the observed one.

use std::collections::BTreeMap;

use super::api::Protocol;
use super::model::{Cluster, Connection, Endpoint};

/// A cell: (from, to), each `ns/pod`.
pub type Table = BTreeMap<(String, String), bool>;

/// A table over `ids` filled by `cell(from, to)`.
pub fn fill(ids: &[String], mut cell: impl FnMut(&str, &str) -> bool) -> Table {
    let mut t = Table::new();
    for from in ids {
        for to in ids {
            t.insert((from.clone(), to.clone()), cell(from, to));
        }
    }
    t
}

/// The model's table over `ids` for `protocol` and `port`, each pod
/// reached at its first address. A pod without one (or unknown) is
/// reached by nobody.
pub fn model(c: &Cluster, ids: &[String], protocol: Protocol, port: u16) -> Table {
    fill(ids, |from, to| {
        let pod = |id: &str| {
            c.pods
                .iter()
                .find(|p| format!("{}/{}", p.namespace, p.name) == id && !p.ips.is_empty())
        };
        let (Some(a), Some(b)) = (pod(from), pod(to)) else {
            return false;
        };
        c.allows(&Connection {
            src: Endpoint::Pod(a, a.ips[0]),
            dst: Endpoint::Pod(b, b.ips[0]),
            protocol: Some(protocol),
            port,
        })
    })
}

/// The cells that differ, loopback aside (upstream ignores it).
pub fn differences(expected: &Table, observed: &Table) -> Vec<(String, String)> {
    expected
        .iter()
        .filter(|((f, t), want)| f != t && observed.get(&(f.clone(), t.clone())) != Some(want))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Expected and observed side by side: `.` allowed, `X` denied, `*` where
/// they differ.
pub fn render(ids: &[String], expected: &Table, observed: &Table) -> String {
    let mut out = String::new();
    for (title, show) in [("expected", expected), ("observed", observed)] {
        out += &format!("{title}:\n-\t{}\n", ids.join("\t"));
        for from in ids {
            let cells: Vec<&str> = ids
                .iter()
                .map(|to| {
                    let key = (from.clone(), to.clone());
                    let differs = from != to && expected.get(&key) != observed.get(&key);
                    match (show.get(&key), differs) {
                        (_, true) if title == "observed" => "*",
                        (Some(true), _) => ".",
                        _ => "X",
                    }
                })
                .collect();
            out += &format!("{from}\t{}\n", cells.join("\t"));
        }
    }
    out
}
