//! The policy loop's state and its one reconcile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podnet_core::policy::compile::{Ruleset, compile};
use podnet_core::policy::node::{Applied, PodAddrs, Reply, Request, STATE_FILE, digest};
use podnet_core::policy::source::{self, Bound, Kind};
use podnet_linux::files::write_private_atomic;
use podnet_linux::nft::policy as table;
use podnet_store::records::Records;
use tokio::sync::{mpsc, oneshot};

use super::Ask;
use crate::backoff::{self, Repeated};
use crate::telemetry::Telemetry;

/// How long an ADD waits for its pod's record (the pod object) to reach
/// this node before it is refused, and the runtime retries.
const RECORD_WAIT: Duration = Duration::from_secs(4);
/// The pods bound at ADD, kept across restarts of podnetd in `--run-dir`
/// (gone at a reboot, with the pods).
pub const BOUND_FILE: &str = "policy-pods.json";

struct Waiting {
    pod: PodAddrs,
    until: Instant,
    reply: oneshot::Sender<Reply>,
}

pub struct Enforcer {
    node: String,
    records: Records,
    /// Whether `records` holds the store's view yet.
    listed: bool,
    bound: Bound,
    bound_file: PathBuf,
    state_file: PathBuf,
    /// What is in place: the ruleset and the kernel's rule count for it.
    in_place: Option<(Ruleset, usize)>,
    applied: Applied,
    waiting: Vec<Waiting>,
    failures: Repeated,
    telemetry: Arc<Telemetry>,
}

impl Enforcer {
    pub fn new(node: String, run_dir: &Path, telemetry: Arc<Telemetry>) -> Enforcer {
        let bound_file = run_dir.join(BOUND_FILE);
        let bound: Bound = std::fs::read(&bound_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<PodAddrs>>(&b).ok())
            .into_iter()
            .flatten()
            .map(|p| ((p.namespace, p.name), p.ips))
            .collect();
        Enforcer {
            node,
            records: Records::default(),
            listed: false,
            bound,
            bound_file,
            state_file: run_dir.join(STATE_FILE),
            in_place: None,
            applied: Applied::default(),
            waiting: Vec::new(),
            failures: Repeated::default(),
            telemetry,
        }
    }

    pub async fn run(
        mut self,
        mut records: mpsc::Receiver<Records>,
        mut asks: mpsc::Receiver<Ask>,
        resync: Duration,
    ) {
        let mut tick = tokio::time::interval(resync);
        loop {
            // The kernel is read for drift at the tick only: an ADD's turn
            // stays short.
            let mut ticked = false;
            tokio::select! {
                Some(r) = records.recv() => {
                    self.records = r;
                    self.listed = true;
                }
                Some((request, reply)) = asks.recv() => self.take(request, reply),
                _ = tick.tick() => ticked = true,
            }
            // Whatever else waits is taken in the same turn: one write.
            while let Ok(r) = records.try_recv() {
                self.records = r;
                self.listed = true;
            }
            while let Ok((request, reply)) = asks.try_recv() {
                self.take(request, reply);
            }
            self.reconcile(ticked);
        }
    }

    fn take(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        match request {
            Request::Add(pod) => {
                // An address is one pod's: a binding whose DEL was lost
                // gives it up.
                for ips in self.bound.values_mut() {
                    ips.retain(|ip| !pod.ips.contains(ip));
                }
                self.bound
                    .insert((pod.namespace.clone(), pod.name.clone()), pod.ips.clone());
                self.waiting.push(Waiting {
                    pod,
                    until: Instant::now() + RECORD_WAIT,
                    reply,
                });
            }
            Request::Del(pod) => {
                self.bound.remove(&(pod.namespace, pod.name));
                let _ = reply.send(Reply::Placed {
                    generation: self.applied.generation,
                });
            }
        }
        self.bound.retain(|_, ips| !ips.is_empty());
        self.save_bound();
    }

    fn save_bound(&self) {
        let list: Vec<PodAddrs> = self
            .bound
            .iter()
            .map(|((namespace, name), ips)| PodAddrs {
                namespace: namespace.clone(),
                name: name.clone(),
                ips: ips.clone(),
            })
            .collect();
        let written = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| write_private_atomic(&self.bound_file, &b));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", self.bound_file.display());
        }
    }

    /// Compiles, and writes the ruleset if it is not what is in place (or,
    /// with `check_drift`, if the kernel's table is not what was written).
    fn reconcile(&mut self, check_drift: bool) {
        if !self.listed {
            // Nothing is known yet: writing now would open every pod.
            self.answer(false);
            return;
        }
        let read = source::read(&self.records.items, &self.bound, &self.node);
        let ruleset = compile(&read.cluster, &self.node);
        let drifted = check_drift
            && match tokio::task::block_in_place(table::rule_count) {
                Ok(count) => self.in_place.as_ref().map(|(_, n)| *n) != count,
                Err(_) => true,
            };
        let same = self.in_place.as_ref().is_some_and(|(r, _)| *r == ruleset);
        let digest = digest(&self.records.items);
        if same && !drifted && digest == self.applied.digest {
            self.answer(true);
            return;
        }
        if same && drifted {
            tracing::warn!("the policy table drifted from what podnetd wrote; writing it again");
        }
        let previous = self.in_place.take().filter(|_| !drifted);
        let written = tokio::task::block_in_place(|| {
            let how = match &previous {
                Some((old, _)) => table::update(old, &ruleset)?,
                None => table::write(&ruleset).map(|()| table::Update::Whole)?,
            };
            // Element changes leave the rules as they were.
            let count = match (how, &previous) {
                (table::Update::Elements(_), Some((_, count))) => Some(*count),
                _ => table::rule_count()?,
            };
            Ok::<_, podnet_linux::nft::NftError>((how, count))
        });
        match written {
            Ok((how, count)) => {
                backoff::log("writing the policy table", self.failures.succeeded());
                if read.corrupt != self.applied.corrupt {
                    for (key, why) in &read.corrupt {
                        tracing::warn!("policy record {key} left out: {why}");
                    }
                }
                self.applied = Applied {
                    digest,
                    generation: self.applied.generation + 1,
                    rules: ruleset.rule_count(),
                    elements: ruleset.element_count(),
                    corrupt: read.corrupt,
                };
                self.in_place = Some((ruleset, count.unwrap_or(0)));
                self.answer(true);
                self.report(how);
            }
            Err(e) => {
                backoff::log(
                    "writing the policy table",
                    self.failures.failed("nft", e.to_string()),
                );
                self.answer(false);
            }
        }
    }

    /// Answers each waiting ADD whose pod is in place; refuses those past
    /// their wait.
    fn answer(&mut self, in_place: bool) {
        let now = Instant::now();
        for w in std::mem::take(&mut self.waiting) {
            let key = Kind::Pod.key(&w.pod.namespace, &w.pod.name);
            if in_place && self.records.items.contains_key(&key) {
                self.telemetry.policy_handoff("placed");
                let _ = w.reply.send(Reply::Placed {
                    generation: self.applied.generation,
                });
            } else if now >= w.until {
                let why = if in_place {
                    format!("pod {key} is not known to podnet's policy source yet")
                } else {
                    "the policy table could not be written".to_owned()
                };
                self.telemetry.policy_handoff("refused");
                let _ = w.reply.send(Reply::Refused { why });
            } else {
                self.waiting.push(w);
            }
        }
    }

    fn report(&self, how: table::Update) {
        let t = &self.telemetry;
        t.policy_generation.set(self.applied.generation as i64);
        t.policy_rules.set(self.applied.rules as i64);
        t.policy_elements.set(self.applied.elements as i64);
        t.policy_updated(match how {
            table::Update::Elements(_) => "elements",
            table::Update::Whole => "whole",
        });
        let written = serde_json::to_vec(&self.applied)
            .map_err(std::io::Error::other)
            .and_then(|b| write_private_atomic(&self.state_file, &b));
        if let Err(e) = written {
            tracing::warn!("{}: {e}", self.state_file.display());
        }
        tracing::info!(
            generation = self.applied.generation,
            rules = self.applied.rules,
            elements = self.applied.elements,
            "policy table written ({})",
            match how {
                table::Update::Elements(n) => format!("{n} element changes"),
                table::Update::Whole => "whole".into(),
            }
        );
    }
}
