//! The agent's loop: it waits on several sources at once (store events,
//! the resync timer, the renewal timer, signals) and reconciles the
//! kernel with the leases it knows. Restart, resync and drift repair are
//! one code path.
//!
//! Failures are soft: a bad record costs only itself (see [`crate::peers`]),
//! a store outage keeps the datapath as it is and is retried with backoff,
//! and each repeated failure is logged once, with a count.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ipnet::IpNet;
use podnet_core::cluster::desired::{Datapath, MasqPlan, Me, desired, masq_plan, stale_gateways};
use podnet_core::cluster::lease::{Lease, LeaseAttrs};
use podnet_core::cluster::netconf::ClusterConf;
use podnet_core::guard::{LAYOUT, key_ifindex, plan_elements, ports_of};
use podnet_core::subnet_file::SubnetFile;
use podnet_linux::netlink::monitor::Watch;
use podnet_linux::nft::guard::TableState;
use podnet_linux::nft::registry::AGENT_TABLE;
use podnet_store::{Result as StoreResult, Revision, Snapshot, Store, StoreError, now};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backend::{Node, Overlay};
use crate::backoff::{self, Backoff, Repeated};
use crate::datapath::{self, HopLinks};
use crate::kernel::Kernel;
use crate::peers::{self, LeaseBook};
use crate::telemetry::Telemetry;

/// What wakes the loop. Any task may send one: the store watcher and the
/// signal handler today, a metrics endpoint or policy source tomorrow.
#[derive(Debug)]
pub enum Event {
    /// The lease set, read at this time (Unix seconds).
    Leases(Snapshot, u64),
    /// The store could not be watched; the watcher retries with backoff.
    StoreDown(StoreError),
    /// Stop: the datapath stays as it is.
    Stop(String),
}

/// What the agent knows of its node once started.
#[derive(Debug, Clone)]
pub struct Setup {
    pub name: String,
    pub attrs: LeaseAttrs,
    pub conf: ClusterConf,
    /// The underlay segments this node sits on (for DirectRouting).
    pub segments: Vec<IpNet>,
    pub node: Node,
    pub masquerade: bool,
    /// The subnet file for the plugin, kept as it was written at start;
    /// `None` in tests without files.
    pub subnet_file: Option<NodeFile>,
    /// The plugin's IPAM state, to name pods left on an old subnet.
    pub ipam_dir: Option<PathBuf>,
}

/// `<run_dir>/subnet.json` and what it must hold.
#[derive(Debug, Clone)]
pub struct NodeFile {
    pub run_dir: PathBuf,
    pub content: SubnetFile,
}

pub struct Agent<S, K> {
    store: Arc<S>,
    kernel: K,
    setup: Setup,
    lease: Lease,
    ttl: Duration,
    book: LeaseBook,
    /// What the egress table was last set to, so it is rewritten only on
    /// change, once at start, and when it drifted.
    applied_masq: Option<Option<MasqPlan>>,
    next_renew: Instant,
    renew_backoff: Backoff,
    renew_failures: Repeated,
    store_failures: Repeated,
    reconcile_failures: Repeated,
    subnet_file_failures: Repeated,
    guard_failures: Repeated,
    /// Whether the guard table was kept once.
    guard_kept: bool,
    /// The guard's drop counters as last read.
    guard_drops_seen: HashMap<String, u64>,
    gateway_failures: Repeated,
    /// The datapath (and egress plan) the last full reconcile applied:
    /// while the leases still want it and the kernel monitor saw nothing,
    /// a resync reads nothing from the kernel.
    applied: Option<(Datapath, Option<MasqPlan>)>,
    /// What the kernel monitor looks for, and the flag it raises when an
    /// object of podnet's may have changed (taken by the next resync).
    watch: Watch,
    /// The last full reconcile, and how often one runs regardless.
    last_full: Option<Instant>,
    full_every: Duration,
    /// The lease set's revision at the last successful reconcile (the
    /// routes are in place), and whether the store has been told (the
    /// Kubernetes store's NetworkUnavailable).
    converged_at: Option<Revision>,
    announced: bool,
    announce_failures: Repeated,
    telemetry: Arc<Telemetry>,
    /// Unknown backend data fields, and nodes of another backend, already
    /// named in the log.
    noted: BTreeSet<String>,
    /// The backend's devices as the last reconcile found them.
    overlay: Overlay,
}

impl<S: Store + 'static, K: Kernel> Agent<S, K> {
    /// An agent holding `lease`; it reconciles once the first lease set
    /// arrives, so a restart deletes nothing before it knows the peers.
    /// Records into `telemetry` (the metrics and health podnetd serves).
    pub fn with_telemetry(self, telemetry: Arc<Telemetry>) -> Self {
        telemetry.lease_expires(self.lease.expires);
        Agent { telemetry, ..self }
    }

    pub fn new(store: Arc<S>, kernel: K, setup: Setup, lease: Lease) -> Self {
        let ttl = Duration::from_secs(setup.conf.lease_ttl);
        Agent {
            store,
            kernel,
            setup,
            lease,
            ttl,
            // After an outage, peers get a renewal period and the longest
            // backoff to renew before anyone is judged expired.
            book: LeaseBook::new((ttl / 4 + backoff::CAP).as_secs() + 2),
            applied_masq: None,
            next_renew: Instant::now() + ttl / 4,
            renew_backoff: Backoff::new(backoff::BASE, backoff::CAP),
            renew_failures: Repeated::default(),
            store_failures: Repeated::default(),
            reconcile_failures: Repeated::default(),
            subnet_file_failures: Repeated::default(),
            guard_failures: Repeated::default(),
            guard_kept: false,
            guard_drops_seen: HashMap::new(),
            gateway_failures: Repeated::default(),
            applied: None,
            watch: Watch {
                changed: Arc::new(AtomicBool::new(false)),
                devices: Arc::default(),
                table: AGENT_TABLE,
            },
            last_full: None,
            full_every: FULL_EVERY,
            converged_at: None,
            announced: false,
            announce_failures: Repeated::default(),
            telemetry: Telemetry::new(Duration::from_secs(1)),
            noted: BTreeSet::new(),
            overlay: Overlay::default(),
        }
    }

    /// How long the store watch waits: often enough both to resync and
    /// to renew.
    pub fn watch_wait(&self, resync: Duration) -> Duration {
        resync.min(self.ttl / 4)
    }

    /// Runs until a stop event (Ok) or a fatal error: another node holds
    /// this node's subnet. The store's calls (renewal, announcement) run
    /// as tasks beside it, so a store that hangs delays them, never the
    /// resync.
    pub async fn run(&mut self, mut events: mpsc::Receiver<Event>, resync: Duration) -> Result<()> {
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewing: Option<JoinHandle<StoreResult<Lease>>> = None;
        let mut announcing: Option<JoinHandle<StoreResult<()>>> = None;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(Event::Stop(why)) => {
                        tracing::info!("{why}: stopping; the datapath stays in place");
                        return Ok(());
                    }
                    None => return Ok(()),
                    Some(event) => self.handle(event),
                },
                _ = tick.tick() => self.resync(),
                _ = tokio::time::sleep_until(self.next_renew.into()), if renewing.is_none() => {
                    renewing = Some(tokio::spawn(self.renewal()));
                }
                done = finish(&mut renewing) => self.renewed(done).await?,
                done = finish(&mut announcing) => self.announced(done),
            }
            self.telemetry.beat();
            if self.converged_at.is_some() && !self.announced && announcing.is_none() {
                let (store, name) = (self.store.clone(), self.setup.name.clone());
                announcing = Some(tokio::spawn(async move { store.network_up(&name).await }));
            }
        }
    }

    /// Takes the answer to telling the store this node's network is up;
    /// retried at the next event or tick until it works.
    fn announced(&mut self, done: StoreResult<()>) {
        match done {
            Ok(()) => {
                backoff::log(
                    "reporting the network up",
                    self.announce_failures.succeeded(),
                );
                tracing::info!("routes in place: network reported up to the store");
                self.announced = true;
            }
            Err(e) => backoff::log(
                "reporting the network up",
                self.announce_failures.failed(e.kind(), e.to_string()),
            ),
        }
    }

    /// One event from the store.
    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Leases(snap, read_at) => {
                backoff::log("store", self.store_failures.succeeded());
                let before = self.book.revision().clone();
                for note in self.book.update(snap, read_at) {
                    peers::log(&note);
                    if note.spoils(&self.setup.name) {
                        // Our own record: renewing rewrites it, so that a
                        // node that joins now can read it.
                        tracing::warn!("renewing this node's lease now to repair its record");
                        self.next_renew = Instant::now();
                    }
                }
                if *self.book.revision() != before {
                    self.note_unknown_fields();
                }
                self.resync();
            }
            Event::StoreDown(e) => {
                self.telemetry.store_error(e.kind());
                // The datapath stays as it is: the peers we know keep
                // their routes, and the expiry clock stops.
                self.book.store_down();
                backoff::log("store", self.store_failures.failed(e.kind(), e.to_string()));
            }
            Event::Stop(_) => {} // the loop stops before it gets here
        }
    }

    /// Names, once each, the backend data fields a newer podnet wrote
    /// that this one ignores, and the nodes of another backend (a flannel
    /// node of another type, say), which are not routed: a mixed cluster
    /// is refused, not half-connected.
    fn note_unknown_fields(&mut self) {
        let backend = self.setup.conf.backend.decide();
        for lease in self.book.leases() {
            if lease.attrs.backend_type != backend.type_name() {
                if self
                    .noted
                    .insert(format!("{}/{}", lease.node, lease.attrs.backend_type))
                {
                    tracing::warn!(
                        "node {} runs backend {:?}, this cluster {:?}: it is not routed from here",
                        lease.node,
                        lease.attrs.backend_type,
                        backend.type_name()
                    );
                }
                continue;
            }
            for data in [&lease.attrs.backend_data, &lease.attrs.backend_v6_data] {
                for field in backend.unknown_data_fields(data) {
                    if self.noted.insert(field.clone()) {
                        tracing::warn!(
                            "node {}'s backend data has a field this podnet does not know, {field}; ignoring it",
                            lease.node
                        );
                    }
                }
            }
        }
    }

    /// What the kernel monitor is to watch for this agent.
    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    /// How often a full reconcile runs when nothing asks for one.
    pub fn with_full_resync(self, every: Duration) -> Self {
        Agent {
            full_every: every,
            ..self
        }
    }

    /// A store event's or the timer's turn: the node's own objects are
    /// kept (the subnet file, the guard, the gateways: few, and read
    /// cheaply), and the datapath is reconciled in full only when
    /// something may have changed: the leases want another datapath, the
    /// kernel monitor saw one of podnet's objects change, the last one
    /// failed, or a full one is due. So a quiet node of 5000 peers reads
    /// its kernel once per full period, not once per resync, and drift is
    /// still repaired within a resync.
    pub fn resync(&mut self) {
        self.keep_node();
        if self.book.is_empty() {
            return;
        }
        match self.full_due() {
            Some(cause) => self.reconcile_datapath(cause),
            None => self.keep_unwatched_entries(),
        }
    }

    /// A backend's entries the kernel monitor cannot see, read and
    /// repaired against the last datapath applied; should that fail (its
    /// device gone, say), a full reconcile follows at the next resync.
    fn keep_unwatched_entries(&mut self) {
        let Some((want, _)) = self.applied.as_ref() else {
            return;
        };
        let Ok(backend) = K::apply_of(&self.setup.conf.backend) else {
            return;
        };
        if !backend.unwatched() {
            return;
        }
        match backend.reconcile_entries(&mut self.kernel, &self.overlay, want) {
            Ok(0) => {}
            Ok(changed) => {
                tracing::warn!(changed, "backend entries had drifted; repaired");
                self.telemetry.drift_repairs.inc_by(changed as u64);
            }
            Err(_) => self.watch.changed.store(true, Ordering::Relaxed),
        }
    }

    /// Why a full reconcile is due now, if it is.
    fn full_due(&mut self) -> Option<&'static str> {
        if self.watch.changed.swap(false, Ordering::Relaxed) {
            return Some("kernel");
        }
        match (&self.applied, self.last_full) {
            (_, None) => return Some("start"),
            (None, _) => return Some("retry"),
            (_, Some(t)) if t.elapsed() >= self.full_every => return Some("periodic"),
            _ => {}
        }
        (self.applied.as_ref() != Some(&self.want())).then_some("leases")
    }

    /// What the leases want: the datapath and the egress plan.
    fn want(&self) -> (Datapath, Option<MasqPlan>) {
        let me = Me {
            name: &self.setup.name,
            segments: &self.setup.segments,
        };
        let leases = self.book.leases();
        let want = desired(&me, &self.setup.conf, leases.clone(), self.book.read_at());
        let plan = self
            .setup
            .masquerade
            .then(|| masq_plan(&self.setup.conf, leases));
        (want, plan)
    }

    /// A full reconcile, whatever the state: the node's objects, then the
    /// datapath read from the kernel and compared.
    #[cfg(test)]
    pub fn reconcile(&mut self) {
        self.keep_node();
        if !self.book.is_empty() {
            self.reconcile_datapath("requested");
        }
    }

    fn keep_node(&mut self) {
        self.keep_subnet_file();
        self.keep_guard();
        self.keep_gateways();
    }

    fn reconcile_datapath(&mut self, cause: &'static str) {
        self.telemetry.reconcile_caused(cause);
        let started = Instant::now();
        self.last_full = Some(started);
        self.applied = None;
        let result = self.try_reconcile();
        let report = match result {
            Ok(changed) => {
                // The same lease set as the last success: whatever had to
                // change had drifted.
                let revision = self.book.revision().clone();
                if self.converged_at.as_ref() == Some(&revision) {
                    self.telemetry.drift_repairs.inc_by(changed as u64);
                }
                self.converged_at = Some(revision);
                self.telemetry.reconciled(started.elapsed());
                self.reconcile_failures.succeeded()
            }
            Err(e) => self
                .reconcile_failures
                .failed("reconcile", format!("{e:#}")),
        };
        backoff::log("reconcile", report);
    }

    /// Rewrites the subnet file if it is gone, damaged or changed: until
    /// then the plugin answers "try again later" (code 11).
    fn keep_subnet_file(&mut self) {
        let Some(file) = &self.setup.subnet_file else {
            return;
        };
        let path = file.run_dir.join("subnet.json");
        let have = std::fs::read_to_string(&path)
            .ok()
            .and_then(|raw| SubnetFile::parse(&raw).ok());
        if have.as_ref() == Some(&file.content) {
            return;
        }
        let report = match crate::host::write_subnet_file(&file.run_dir, &file.content) {
            Ok(()) => {
                tracing::warn!(path = %path.display(), "subnet file was missing, damaged or changed; rewritten");
                self.subnet_file_failures.succeeded()
            }
            Err(e) => self.subnet_file_failures.failed("io", format!("{e:#}")),
        };
        backoff::log("rewriting the subnet file", report);
    }

    /// Removes any bridge gateway of a subnet this node no longer holds
    /// (its lease went elsewhere while it was away, or someone added one),
    /// and names the pods left on it.
    fn keep_gateways(&mut self) {
        let cluster = self.setup.conf.cluster_cidrs();
        let own = &self.lease.subnets;
        let result = self.kernel.bridge_addresses().and_then(|addrs| {
            let stale = stale_gateways(&addrs, &cluster, own);
            for (index, addr) in &stale {
                self.kernel.delete_address(*index, *addr)?;
                tracing::warn!(bridge = index, gateway = %addr, subnets = ?own, "removed the gateway of a subnet this node does not hold");
            }
            Ok(stale.len())
        });
        let report = match result {
            Ok(removed) => {
                if removed > 0
                    && let Some(dir) = &self.setup.ipam_dir
                {
                    crate::host::name_pods_outside(dir, own);
                }
                self.telemetry.drift_repairs.inc_by(removed as u64);
                self.gateway_failures.succeeded()
            }
            Err(e) => self.gateway_failures.failed("netlink", format!("{e:#}")),
        };
        backoff::log("removing stale gateways", report);
    }

    /// Keeps the anti-spoofing table: made again if it is missing,
    /// migrated in place if its layout is older or its rules were cut, and
    /// every live guarded port's elements in it (re-admitted from the
    /// record on its port), the gone ports' pruned. Pods need it whether
    /// or not any peer is known, so it does not wait for the store.
    pub fn keep_guard(&mut self) {
        let report = match self.try_keep_guard() {
            Ok(repaired) => {
                self.telemetry.drift_repairs.inc_by(repaired as u64);
                self.guard_failures.succeeded()
            }
            Err(e) => self.guard_failures.failed("guard", format!("{e:#}")),
        };
        backoff::log("keeping the anti-spoofing table", report);
    }

    fn try_keep_guard(&mut self) -> Result<usize> {
        let k = &mut self.kernel;
        let mut repaired = 0;
        // Ports admitted again after they had lost their elements.
        let mut readmitted = 0;
        let state = k.guard_table()?;
        if state != TableState::Current {
            let carried = k.write_guard_table()?;
            match state {
                TableState::Outdated(Some(LAYOUT)) => {
                    tracing::warn!("anti-spoofing rules were changed; written again");
                    repaired += 1;
                }
                TableState::Outdated(from) => tracing::info!(
                    ?from,
                    to = LAYOUT,
                    ports = carried.readmitted,
                    "anti-spoofing table migrated in place, with every port"
                ),
                // New, unless it had been kept or held ports.
                _ if !self.guard_kept && carried.readmitted == 0 => {
                    tracing::info!("anti-spoofing table made")
                }
                _ => {
                    tracing::warn!("anti-spoofing table was missing; made again");
                    repaired += 1;
                    readmitted += carried.readmitted;
                }
            }
            if carried.adopted > 0 {
                tracing::info!(
                    ports = carried.adopted,
                    "ports an older release attached without a guard pass unguarded, as they did; recorded as such"
                );
            }
        }
        let listed = k.guard_elements()?;
        let (live, mut ports) = k.ports()?;
        // A live port admitted before ports carried their record (an
        // upgrade) gets one from its elements, so that it too is
        // re-admitted should the table be lost.
        // One that cannot be recorded (too many addresses for an alias, or
        // gone meanwhile) costs only itself.
        for port in ports_of(&listed, &live) {
            let recorded = ports.iter().any(|p| p.ifindex == port.ifindex);
            if recorded || port.alias().is_none() {
                continue;
            }
            match k.record_port(&port) {
                Ok(()) => {
                    tracing::info!(
                        ifindex = port.ifindex,
                        "recorded an older port's guard on its link"
                    );
                    ports.push(port);
                }
                Err(e) => tracing::debug!(
                    ifindex = port.ifindex,
                    "could not record a port's guard: {e:#}"
                ),
            }
        }
        let plan = plan_elements(&listed, &live, &ports);
        if !plan.is_empty() {
            k.apply_guard(&plan)?;
        }
        readmitted += plan
            .add
            .iter()
            .filter_map(|(_, key)| key_ifindex(key))
            .collect::<BTreeSet<u32>>()
            .len();
        if readmitted > 0 {
            tracing::warn!(
                ports = readmitted,
                "ports had lost their anti-spoofing elements; re-admitted from their records"
            );
            self.telemetry.guard_readmitted.inc_by(readmitted as u64);
            repaired += readmitted;
        }
        self.count_guard_drops();
        self.guard_kept = true;
        Ok(repaired)
    }

    /// Publishes the guard's drop counters: what each gained since the
    /// last look (all of it, if the table was made again since).
    fn count_guard_drops(&mut self) {
        let Ok(drops) = self.kernel.guard_drops() else {
            return;
        };
        for (reason, frames) in drops {
            let seen = self.guard_drops_seen.insert(reason.clone(), frames);
            let new = match seen {
                Some(before) if before <= frames => frames - before,
                _ => frames,
            };
            if new > 0 {
                self.telemetry.guard_dropped(&reason, new);
            }
        }
    }

    /// Computes and applies the datapath: the backend's devices (made or
    /// repaired), its entries, the routes and the egress table. Returns
    /// the objects changed.
    fn try_reconcile(&mut self) -> Result<usize> {
        let started = Instant::now();
        let (want, plan) = self.want();
        let backend = &self.setup.conf.backend;
        // Without its devices, the overlay's routes wait; direct routes and
        // the egress table go ahead, and the error is reported after.
        let devices = K::apply_of(backend).and_then(|b| {
            b.ensure_devices(
                &mut self.kernel,
                &self.setup.attrs,
                &self.setup.node,
                &self.lease.subnets,
            )
        });
        let links = HopLinks {
            overlay: *devices.as_ref().unwrap_or(&Default::default()),
            underlay: self.setup.node.links,
        };
        self.overlay = links.overlay;
        if let Ok(mut watched) = self.watch.devices.lock() {
            *watched = links.overlay.iter().flatten().copied().collect();
        }
        let changes = datapath::reconcile(&mut self.kernel, backend, &links, &want);
        let mut egress = 0;
        let same_plan = self.applied_masq.as_ref() == Some(&plan);
        if !same_plan || !self.kernel.egress_intact()? {
            self.kernel.replace_egress(plan.as_ref())?;
            let nodes = plan.as_ref().map(|p| p.node_ips.len());
            if same_plan {
                tracing::warn!(?nodes, "egress table was flushed or changed; rewritten");
                egress = 1;
            } else {
                tracing::info!(?nodes, "egress masquerade updated");
            }
            self.applied_masq = Some(plan);
        }
        let changes = changes?;
        devices?;
        let p = &changes.routes;
        if !p.is_empty() {
            // One line per route reads well for a few peers, not thousands.
            if p.routes.len() + p.delete_routes.len() <= 16 {
                for (r, id) in &p.routes {
                    tracing::info!(dst = %r.dst, via = %r.via, overlay = r.overlay, nexthop = id, "route installed");
                }
                for dst in &p.delete_routes {
                    tracing::info!(%dst, "route removed");
                }
            }
            tracing::info!(
                installed = p.routes.len(),
                removed = p.delete_routes.len(),
                peers = want.routes.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "routes reconciled"
            );
        }
        if changes.entries > 0 {
            tracing::info!(changed = changes.entries, "backend entries updated");
        }
        let t = &self.telemetry;
        t.peers.set(want.routes.len() as i64);
        t.routes.set(want.routes.len() as i64);
        t.neighbours.set(want.backend_objects() as i64);
        let changed = p.routes.len() + p.delete_routes.len() + changes.entries + egress;
        self.applied = Some((want, self.applied_masq.clone().flatten()));
        Ok(changed)
    }

    /// Renews the lease. Only NotFound makes the node acquire again, and
    /// only its own subnet will do: pods hold addresses from it. An
    /// unavailable store is retried with backoff, keeping the subnet; a
    /// subnet another node holds is fatal.
    #[cfg(test)]
    pub async fn renew(&mut self) -> Result<()> {
        let result = self.renewal().await;
        self.renewed(result).await
    }

    /// The store's half of a renewal, which the loop runs as a task of
    /// its own: a store that hangs never stops the loop.
    fn renewal(&self) -> impl Future<Output = StoreResult<Lease>> + Send + 'static {
        let (store, ttl) = (self.store.clone(), self.ttl);
        let (name, attrs, conf) = (
            self.setup.name.clone(),
            self.setup.attrs.clone(),
            self.setup.conf.clone(),
        );
        async move {
            match store.renew(&name, &attrs, ttl).await {
                Err(StoreError::NotFound(_)) => {
                    tracing::warn!("this node's lease is gone from the store; acquiring it again");
                    store.acquire(&name, &attrs, &conf, ttl).await
                }
                other => other,
            }
        }
    }

    /// Takes a renewal's answer.
    async fn renewed(&mut self, result: StoreResult<Lease>) -> Result<()> {
        let name = &self.setup.name;
        match result {
            Ok(lease) if lease.subnets == self.lease.subnets => {
                backoff::log("lease renewal", self.renew_failures.succeeded());
                self.renew_backoff.succeeded();
                self.next_renew = Instant::now() + self.ttl / 4;
                self.telemetry.lease_expires(lease.expires);
                self.lease = lease;
            }
            Ok(other) => {
                // Our subnet went to another node while we could not renew.
                if let Err(e) = self.store.release(name).await {
                    tracing::warn!("could not give back the new lease {:?}: {e}", other.subnets);
                }
                bail!(
                    "this node's subnets {:?} were given to another node; stopping. {LOST}",
                    self.lease.subnets
                )
            }
            Err(StoreError::Conflict { subnet, holder }) => {
                bail!("this node's subnet {subnet} is now held by node {holder}; stopping. {LOST}")
            }
            Err(e) => {
                self.telemetry.store_error(e.kind());
                let report = self.renew_failures.failed(e.kind(), e.to_string());
                backoff::log("lease renewal", report);
                self.next_renew = Instant::now() + self.renew_backoff.failed(fastrand::f64());
            }
        }
        Ok(())
    }
}

/// A full reconcile runs at least this often (`--full-resync-s`), even
/// when neither the leases nor the kernel monitor ask for one: it
/// catches what the monitor cannot see.
pub const FULL_EVERY: Duration = Duration::from_secs(60);

/// What an operator does when a node lost its subnet.
const LOST: &str = "Pods keep their addresses and the datapath stays as it is; \
     drain this node, then restart podnetd to lease a new subnet";

/// A spawned store call's answer, once it has one (never, while there is
/// none); the slot is emptied.
async fn finish<T>(task: &mut Option<JoinHandle<StoreResult<T>>>) -> StoreResult<T> {
    let Some(handle) = task.as_mut() else {
        return std::future::pending().await;
    };
    let done = handle
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("store task: {e}"))));
    *task = None;
    done
}

/// Watches the store and sends what it sees, backing off while it fails.
pub async fn watch_store<S: Store>(store: Arc<S>, events: mpsc::Sender<Event>, wait: Duration) {
    let mut revision = Revision::NONE;
    let mut backoff = Backoff::new(backoff::BASE, backoff::CAP);
    loop {
        let event = match store.watch(&revision, wait).await {
            Ok(snap) => {
                backoff.succeeded();
                revision = snap.revision.clone();
                Event::Leases(snap, now())
            }
            Err(e) => Event::StoreDown(e),
        };
        let failed = matches!(event, Event::StoreDown(_));
        if events.send(event).await.is_err() {
            return; // the loop has stopped
        }
        if failed {
            tokio::time::sleep(backoff.failed(fastrand::f64())).await;
        }
    }
}

#[cfg(test)]
mod tests;
