//! Building the lab and taking it down: `up`, `add-node`, `remove-node`,
//! `agent`, `down`.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;
use podnet_core::cluster::backend::Backend;
use podnet_linux::netlink::{Entry, Link, Netlink};
use podnet_linux::netns::{NamedNetns, Netns};
use podnet_linux::sysctl;
use podnet_store::Store;
use serde_json::json;

use crate::plumbing::{
    alive, ip, plug, sibling, signal_agent, start_agent, step, stop_agent, stop_processes_in,
    wait_for_file,
};
use crate::record::{Lab, Node, Pod};
use crate::topology::{self as topo, Shape};

pub struct UpOptions {
    pub dir: PathBuf,
    pub lease_ttl: Option<u64>,
    pub nodes: usize,
    pub pods_per_node: usize,
    pub backend: String,
    pub direct_routing: bool,
    pub shape: Shape,
    /// The agents' egress masquerade (`podnetd --masquerade`); only the
    /// datapath benchmark turns it off, to measure the datapath without it.
    pub masquerade: bool,
    /// Run the agents on a 3-member etcd instead of the file store.
    pub etcd: bool,
    /// Run the agents on the (emulated) Kubernetes API.
    pub kube: bool,
    /// The agents' `--ipam-reclaim-after` (seconds), if not the default.
    pub ipam_reclaim_after: Option<u64>,
    /// The agents enforce NetworkPolicy.
    pub policy: bool,
    /// Upstream's e2e model (implies `policy`): namespaces x, y, z with
    /// pods a, b, c each, spread over the nodes, instead of
    /// `pods_per_node`'s pods.
    pub policy_model: bool,
}

/// The cluster config the lab's agents share.
fn net_conf(opts: &UpOptions) -> serde_json::Value {
    let mut conf = json!({
        "Network": "10.244.0.0/16",
        "Backend": { "Type": opts.backend },
    });
    if opts.direct_routing {
        conf["Backend"]["DirectRouting"] = json!(true);
    }
    if let Some(ttl) = opts.lease_ttl {
        conf["LeaseTTL"] = json!(ttl);
    }
    if opts.shape.dual_stack {
        conf["EnableIPv6"] = json!(true);
        conf["IPv6Network"] = json!("fd00:244::/56");
        conf["IPv6SubnetLen"] = json!(64);
    }
    conf
}

pub fn up(opts: UpOptions) -> Result<()> {
    if Lab::load(&opts.dir)?.is_some() {
        bail!(
            "a lab already exists in {}; run `podnetctl lab down` first",
            opts.dir.display()
        );
    }
    if !(1..=topo::MAX_NODES).contains(&opts.nodes) {
        bail!("--nodes must be 1..={}", topo::MAX_NODES);
    }
    // Any backend podnet knows; one without an overlay needs the nodes
    // on one segment.
    let backend = Backend::parse(Some(&json!({ "Type": opts.backend })), &mut Vec::new())
        .map_err(|e| anyhow!("--backend: {e}"))?;
    if opts.shape.routed && backend.decide().overlay_ports().is_empty() {
        bail!(
            "{} needs every node on one L2 segment, and --routed puts each node \
             behind a router: use an overlay (vxlan or wireguard) with --routed",
            opts.backend
        );
    }
    if opts.etcd && opts.shape.routed {
        bail!("--store etcd puts its members on the flat underlay: it does not go with --routed");
    }
    if opts.kube && (opts.shape.routed || opts.shape.dual_stack) {
        bail!(
            "--store kube runs on a flat, single-stack underlay: not with --routed or --dual-stack"
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&opts.dir)?;
    let dir = opts.dir.canonicalize()?;
    let id = format!("pl{}", std::process::id());
    let mut lab = Lab {
        underlay_ns: topo::underlay_ns(&id, opts.shape),
        external_ns: topo::external_ns(&id),
        id,
        dir,
        backend: opts.backend.clone(),
        shape: opts.shape,
        direct_routing: opts.direct_routing,
        pods_per_node: if opts.policy_model {
            0
        } else {
            opts.pods_per_node
        },
        masquerade: opts.masquerade,
        nodes: Vec::new(),
        pods: Vec::new(),
        etcd: Vec::new(),
        ipam_reclaim_after: opts.ipam_reclaim_after,
        kube: None,
        policy: opts.policy || opts.policy_model,
    };
    std::fs::write(lab.dir.join("net-conf.json"), net_conf(&opts).to_string())?;
    lab.save()?;
    println!(
        "lab up: {} nodes x {} pods, backend {}{}, {} underlay{}, in {}",
        opts.nodes,
        opts.pods_per_node,
        opts.backend,
        if opts.direct_routing {
            " + DirectRouting"
        } else {
            ""
        },
        if opts.shape.routed { "routed" } else { "flat" },
        if opts.shape.dual_stack {
            ", dual-stack"
        } else {
            ""
        },
        lab.dir.display()
    );
    let built = build(&mut lab, opts.nodes, &opts);
    if let Err(e) = built {
        eprintln!("lab up failed: {e:#}; removing what was made");
        lab.save()?;
        down(&lab.dir)?;
        return Err(e);
    }
    println!("lab is up: `podnetctl lab check` to probe it, `podnetctl lab down` to remove it");
    Ok(())
}

fn build(lab: &mut Lab, nodes: usize, opts: &UpOptions) -> Result<()> {
    step(if lab.shape.routed {
        "underlay (router, external host)"
    } else {
        "underlay (fabric bridge, external host)"
    });
    let underlay = NamedNetns::create(&lab.underlay_ns)?.keep();
    if lab.shape.routed {
        // A router forwards between the node segments, in both families.
        let ns = Netns::open(format!("/var/run/netns/{underlay}"))?;
        ns.run(|| -> Result<()> {
            sysctl::write("net/ipv4/ip_forward", "1")?;
            sysctl::write("net/ipv6/conf/all/forwarding", "1")?;
            Ok(())
        })??;
    } else {
        ip(&underlay, &["link", "add", "fab0", "type", "bridge"])?;
        ip(&underlay, &["link", "set", "fab0", "up"])?;
    }
    let ext = NamedNetns::create(&lab.external_ns)?.keep();
    plug(lab, &ext, "ext", &lab.shape.external())?;
    println!("ok");
    if opts.etcd {
        crate::etcd::start(lab)?;
    }
    if opts.kube {
        crate::kube::start(lab)?;
    }
    if lab.policy && lab.pods_per_node > 0 {
        crate::policy::put_namespace(lab, &crate::record::lab_namespace())?;
    }
    for i in 1..=nodes {
        add_node_at(lab, i)?;
    }
    if opts.policy_model {
        policy_model(lab)?;
    }
    Ok(())
}

/// Upstream's e2e model: namespaces x, y, z labelled with their names;
/// pods a, b, c in each, labelled `pod=<name>`, with the model's named
/// ports and servers, spread over the nodes in turn.
fn policy_model(lab: &mut Lab) -> Result<()> {
    use crate::policy::{MODEL_NAMESPACES, MODEL_PODS, model_ports, put_namespace};
    for ns in MODEL_NAMESPACES {
        put_namespace(lab, ns)?;
    }
    let nodes: Vec<Node> = lab.nodes.clone();
    for (k, (ns, name)) in MODEL_NAMESPACES
        .iter()
        .flat_map(|ns| MODEL_PODS.iter().map(move |p| (*ns, *p)))
        .enumerate()
    {
        let node = &nodes[k % nodes.len()];
        step(&format!(
            "{ns}/{name} on {}: attach, serve 80 and 81",
            node.name
        ));
        let spec = PodSpec {
            netns: topo::model_pod_ns(&lab.id, ns, name),
            namespace: ns.into(),
            name: name.into(),
            labels: [("pod".to_owned(), name.to_owned())].into(),
            ports: model_ports(),
        };
        let ips = create_pod(lab, node, &spec)?;
        crate::policy::start_servers(&spec.netns)?;
        println!("{}", shown(&ips));
    }
    Ok(())
}

/// `lab add-pod NODE NS/NAME`: one more pod on `node`, labelled `labels`
/// (`key=value`); with policy, its record is written before its ADD.
pub fn add_pod(dir: &Path, node: &str, id: &str, labels: &[String]) -> Result<()> {
    let mut lab = Lab::load(dir)?.ok_or_else(|| anyhow!("no lab in {}", dir.display()))?;
    let node = lab
        .nodes
        .iter()
        .find(|n| n.name == node)
        .cloned()
        .ok_or_else(|| anyhow!("no node {node} in the lab"))?;
    let (namespace, name) = id
        .split_once('/')
        .ok_or_else(|| anyhow!("\"{id}\": name the pod NAMESPACE/NAME"))?;
    if lab.pods.iter().any(|p| p.id() == id) {
        bail!("pod {id} exists");
    }
    let labels = labels
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow!("\"{l}\": use key=value"))
        })
        .collect::<Result<_>>()?;
    let spec = PodSpec {
        netns: topo::added_pod_ns(&lab.id, lab.pods.len()),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        labels,
        ports: Vec::new(),
    };
    if lab.policy {
        crate::policy::ensure_namespace(&lab, namespace)?;
    }
    step(&format!("{id} on {}: attach with podnet", node.name));
    println!("{}", shown(&create_pod(&mut lab, &node, &spec)?));
    Ok(())
}

/// A pod to create: where, and what its record says.
struct PodSpec {
    netns: String,
    namespace: String,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    ports: Vec<podnet_core::policy::source::PortRecord>,
}

fn shown(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates a pod on `node` and attaches it with podnet. With policy, its
/// record is written first (as the pod object exists before its
/// sandbox), and again with its addresses.
fn create_pod(lab: &mut Lab, node: &Node, spec: &PodSpec) -> Result<Vec<IpAddr>> {
    let pod_ns = NamedNetns::create(&spec.netns)?.keep();
    let mut record = podnet_core::policy::source::PodRecord {
        namespace: spec.namespace.clone(),
        name: spec.name.clone(),
        node: node.name.clone(),
        labels: spec.labels.clone(),
        ips: Vec::new(),
        ports: spec.ports.clone(),
    };
    if lab.policy {
        crate::policy::put_pod(lab, &record)?;
    }
    let mut pod = Pod {
        name: spec.name.clone(),
        namespace: spec.namespace.clone(),
        ns: pod_ns,
        node: node.name.clone(),
        ips: Vec::new(),
    };
    let ips = attach(lab, &node.name, &node.ns, &pod);
    pod.ips = ips.as_ref().map_or_else(|_| Vec::new(), Clone::clone);
    lab.pods.push(pod);
    lab.save()?;
    let ips = ips?;
    if lab.policy {
        record.ips = ips.clone();
        crate::policy::put_pod(lab, &record)?;
    }
    Ok(ips)
}

/// Every lab node runs on one kernel, whose neighbour table limit
/// (`gc_thresh3`, 1024 by default, settable only in the root namespace) is
/// shared by all of them: a 30-node flat lab learns about 900 underlay
/// neighbours, and then new ones fail for a while ("neighbor table
/// overflow" in dmesg, probes timing out). Real nodes each have a table of
/// their own. Permanent entries do not count against the limit, so the lab
/// pins each pair of nodes' underlay neighbours, both ways.
fn pin_underlay_neighbours(lab: &Lab, name: &str) -> Result<()> {
    if lab.shape.routed {
        return Ok(()); // nodes reach each other through the router
    }
    let eth0 = |ns: &str| -> Result<(Netlink, Link)> {
        let mut nl = Netlink::open_in(&Netns::open(format!("/var/run/netns/{ns}"))?)?;
        let link = nl
            .link("eth0")?
            .ok_or_else(|| anyhow!("{ns} has no eth0"))?;
        Ok((nl, link))
    };
    let entries = |node: &Node, mac: &[u8]| -> Vec<Entry> {
        node.addrs
            .iter()
            .map(|ip| Entry {
                ip: *ip,
                mac: mac.to_vec(),
            })
            .collect()
    };
    let Some(new) = lab.nodes.iter().find(|n| n.name == name) else {
        bail!("no node {name} in the lab");
    };
    let (mut new_nl, new_eth) = eth0(&new.ns)?;
    for other in lab.nodes.iter().filter(|n| n.name != name) {
        let (mut nl, eth) = eth0(&other.ns)?;
        for e in entries(new, &new_eth.mac) {
            nl.replace_entry(eth.index, &e, false)?;
        }
        for e in entries(other, &eth.mac) {
            new_nl.replace_entry(new_eth.index, &e, false)?;
        }
    }
    Ok(())
}

pub fn add_node(dir: &Path) -> Result<()> {
    let mut lab = Lab::load(dir)?.ok_or_else(|| anyhow!("no lab in {}", dir.display()))?;
    let next = lab.nodes.iter().map(|n| n.index).max().unwrap_or(0) + 1;
    if next > topo::MAX_NODES {
        bail!("the lab is full ({} nodes)", topo::MAX_NODES);
    }
    add_node_at(&mut lab, next)
}

fn add_node_at(lab: &mut Lab, i: usize) -> Result<()> {
    let name = topo::node_name(i);
    let attachments = lab.shape.node(i);
    let addrs: Vec<IpAddr> = attachments.iter().map(|a| a.addr).collect();
    step(&format!("{name} {}: namespace and underlay", addrs[0]));
    let ns = NamedNetns::create(&topo::node_ns(&lab.id, i))?.keep();
    lab.nodes.push(Node {
        index: i,
        name: name.clone(),
        ns: ns.clone(),
        addrs: addrs.clone(),
        pid: 0,
    });
    lab.save()?;
    plug(lab, &ns, &topo::port(i), &attachments)?;
    pin_underlay_neighbours(lab, &name)?;
    println!("ok");

    if lab.kube.is_some() {
        step(&format!("{name}: Node object, podCIDRs 10.244.{i}.0/24"));
        crate::kube::register(lab, &name, vec![format!("10.244.{i}.0/24")])?;
        println!("ok");
    }
    step(&format!("{name}: podnetd"));
    let started = Instant::now();
    let pid = start_agent(lab, &name, &ns, &addrs)?;
    if let Some(n) = lab.nodes.iter_mut().find(|n| n.name == name) {
        n.pid = pid;
    }
    lab.save()?;
    wait_for_file(&lab.node_dir(&name).join("run/subnet.json"), pid)?;
    println!("ok (pid {pid}, ready in {:?})", started.elapsed());

    let node = lab
        .nodes
        .iter()
        .find(|n| n.name == name)
        .cloned()
        .ok_or_else(|| anyhow!("{name} vanished from the lab"))?;
    for p in 1..=lab.pods_per_node {
        let pod = topo::pod_name(i, p);
        step(&format!("{pod}: attach with podnet"));
        let spec = PodSpec {
            netns: topo::pod_ns(&lab.id, i, p),
            namespace: crate::record::lab_namespace(),
            labels: [("pod".to_owned(), pod.clone())].into(),
            name: pod,
            ports: Vec::new(),
        };
        println!("{}", shown(&create_pod(lab, &node, &spec)?));
    }
    Ok(())
}

fn attach(lab: &Lab, node: &str, node_ns: &str, pod: &Pod) -> Result<Vec<IpAddr>> {
    let dir = lab.node_dir(node);
    let mut conf = json!({
        "cniVersion": "1.0.0",
        "name": "podnet",
        "type": "podnet",
        "subnetFile": dir.join("run/subnet.json"),
        "logFile": dir.join("podnet.log"),
        "ipam": { "dataDir": dir.join("ipam") },
    });
    if lab.policy {
        conf["policy"] = json!(true);
        conf["policySocket"] = json!(dir.join("run/policy.sock"));
    }
    let (pod_ns, name) = (&pod.ns, &pod.name);
    // As on a cluster node, where podnetd made the anti-spoofing table:
    // the plugin needs no binary from PATH (no `nft`).
    let mut child = Command::new("ip")
        .args(["netns", "exec", node_ns, "env", "PATH=/nonexistent"])
        .arg(sibling("podnet")?)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", format!("{}-{name}", pod.namespace))
        .env("CNI_NETNS", format!("/var/run/netns/{pod_ns}"))
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={name}",
                pod.namespace
            ),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(conf.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let result: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    if !out.status.success() {
        bail!("podnet ADD {}: {}", pod.id(), result["msg"]);
    }
    let ips: Vec<IpAddr> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect();
    if ips.is_empty() {
        bail!("podnet ADD {} returned no address", pod.id());
    }
    Ok(ips)
}

pub fn remove_node(dir: &Path, name: &str) -> Result<()> {
    let mut lab = Lab::load(dir)?.ok_or_else(|| anyhow!("no lab in {}", dir.display()))?;
    let Some(pos) = lab.nodes.iter().position(|n| n.name == name) else {
        bail!("no node {name} in the lab");
    };
    let node = lab.nodes.remove(pos);
    step(&format!(
        "{name}: stop podnetd, release its lease (kube: delete its Node), remove it"
    ));
    stop_agent(node.pid);
    stop_processes_in(&node.ns);
    if lab.kube.is_some() {
        crate::kube::deregister(&lab, name)?;
    } else {
        lab.with_store(|s| async move { s.release(name).await })?;
    }
    let (gone, kept): (Vec<Pod>, Vec<Pod>) = lab.pods.drain(..).partition(|p| p.node == name);
    lab.pods = kept;
    // Delete the underlay port first: that is synchronous, whereas a
    // namespace's links go away in the background, and a node added next
    // would reuse the port's name.
    ip(&lab.underlay_ns, &["link", "del", &topo::port(node.index)])?;
    for ns in gone.iter().map(|p| p.ns.as_str()).chain([node.ns.as_str()]) {
        NamedNetns::delete(ns)?;
    }
    let _ = std::fs::remove_dir_all(lab.node_dir(name));
    lab.save()?;
    println!("ok");
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAction {
    Stop,
    Start,
    Restart,
}

impl std::str::FromStr for AgentAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stop" => Ok(AgentAction::Stop),
            "start" => Ok(AgentAction::Start),
            "restart" => Ok(AgentAction::Restart),
            other => Err(format!("{other}: use stop, start or restart")),
        }
    }
}

/// Stops (SIGTERM, or SIGKILL with `kill`), starts or restarts one node's
/// podnetd, leaving everything else as it is.
pub fn agent(dir: &Path, name: &str, action: AgentAction, kill_it: bool) -> Result<()> {
    let mut lab = Lab::load(dir)?.ok_or_else(|| anyhow!("no lab in {}", dir.display()))?;
    let node = lab
        .nodes
        .iter()
        .find(|n| n.name == name)
        .cloned()
        .ok_or_else(|| anyhow!("no node {name} in the lab"))?;
    let mut pid = node.pid;
    if matches!(action, AgentAction::Stop | AgentAction::Restart) {
        signal_agent(
            pid,
            if kill_it {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            },
        );
        pid = 0;
    }
    if matches!(action, AgentAction::Start | AgentAction::Restart) {
        if alive(node.pid) {
            bail!("{name}'s podnetd is already running (pid {})", node.pid);
        }
        pid = start_agent(&lab, &node.name, &node.ns, &node.addrs)?;
    }
    if let Some(n) = lab.nodes.iter_mut().find(|n| n.name == name) {
        n.pid = pid;
    }
    lab.save()?;
    println!(
        "{name}: podnetd {}",
        if pid > 0 {
            format!("running (pid {pid})")
        } else {
            "stopped".into()
        }
    );
    Ok(())
}

/// Stops every process of the lab and removes its namespaces and its
/// directory.
pub fn down(dir: &Path) -> Result<()> {
    let Some(lab) = Lab::load(dir)? else {
        bail!("no lab in {}", dir.display());
    };
    println!("stopping {} agents", lab.nodes.len());
    for pid in lab
        .nodes
        .iter()
        .map(|n| n.pid)
        .chain(lab.etcd.iter().map(|m| m.pid))
        .chain(lab.kube.iter().map(|k| k.pid))
    {
        stop_agent(pid);
    }
    for ns in lab.namespaces() {
        // What the agents started (wireguard-go) keeps a namespace alive.
        stop_processes_in(&ns);
        if let Err(e) = podnet_linux::netns::NamedNetns::delete(&ns) {
            eprintln!("  {e}");
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    println!("lab removed");
    Ok(())
}
