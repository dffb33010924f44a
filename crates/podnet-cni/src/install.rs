//! `podnet install-cni` and `podnet uninstall-cni`: this binary into the
//! runtime's CNI bin dir and a conflist into its conf dir, safe to run on a
//! live node. Each file is written beside its final name and renamed into
//! place, so a runtime that execs the plugin or reads the conflist mid-
//! upgrade sees the old file or the new one, never half of one, and never
//! "text file busy". The conflist goes in last, once podnetd has written
//! its subnet file: the runtime reports the node's network ready only when
//! it is.
//!
//! The flags are parsed here by hand: clap would add to every plugin
//! start, and this is the only command line the plugin has.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use podnet_core::cni::conflist::{
    CONFLIST_NAME, DEFAULT_CONFLIST, check_conflist, is_podnets, uninstalling,
};
use podnet_core::subnet_file::{DEFAULT_SUBNET_FILE, SubnetFile};
use podnet_linux::files::{install_atomic, install_conflist, remove_former_conflists};
use podnet_linux::netlink::{Netlink, NetlinkError};
use podnet_linux::nft::registry;

const PLUGIN_NAME: &str = "podnet";

const USAGE: &str = "\
usage: podnet install-cni [--bin-dir DIR] [--conf-dir DIR] [--conflist FILE]
                          [--conflist-name NAME] [--subnet-file FILE] [--plugin-only]
       podnet uninstall-cni [--bin-dir DIR] [--conf-dir DIR] [--conflist-name NAME] [--wait]

  --bin-dir        where the runtime finds CNI plugins   (/opt/cni/bin)
  --conf-dir       where the runtime finds CNI configs   (/etc/cni/net.d)
  --conflist       the conflist to install               (podnet alone, CNI 1.0.0)
  --conflist-name  its file name; sort it first          (05-podnet.conflist)
  --subnet-file    install-cni writes the conflist once this exists
                                                         (/run/podnet/subnet.json)
  --plugin-only    the plugin alone: podnetd --cni-conflist installs the
                   conflist once its network is up (the DaemonSet's init
                   container)
  --wait           uninstall-cni: wait for the node's podnet pods to go,
                   then remove the rest";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub bin_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub conflist: Option<PathBuf>,
    pub conflist_name: String,
    pub subnet_file: PathBuf,
    pub plugin_only: bool,
    pub wait: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bin_dir: "/opt/cni/bin".into(),
            conf_dir: "/etc/cni/net.d".into(),
            conflist: None,
            conflist_name: CONFLIST_NAME.into(),
            subnet_file: DEFAULT_SUBNET_FILE.into(),
            plugin_only: false,
            wait: false,
        }
    }
}

impl Options {
    /// `--flag value` pairs; an unknown flag or a missing value is an error.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--bin-dir" => o.bin_dir = value()?.into(),
                "--conf-dir" => o.conf_dir = value()?.into(),
                "--conflist" => o.conflist = Some(value()?.into()),
                "--conflist-name" => o.conflist_name = value()?,
                "--subnet-file" => o.subnet_file = value()?.into(),
                "--plugin-only" => o.plugin_only = true,
                "--wait" => o.wait = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.conflist_name.contains('/') || !o.conflist_name.ends_with(".conflist") {
            return Err(format!(
                "--conflist-name {:?}: a file name ending in .conflist",
                o.conflist_name
            ));
        }
        Ok(o)
    }
}

/// Runs `install-cni` or `uninstall-cni` with the arguments after it.
pub fn main(command: &str, args: &[String]) -> ExitCode {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let done = Options::parse(args).and_then(|o| match command {
        "install-cni" => install(&o),
        _ => uninstall(&o),
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podnet {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn install(o: &Options) -> Result<(), String> {
    let conflist = match &o.conflist {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("--conflist {}: {e}", path.display()))?
        }
        None => DEFAULT_CONFLIST.as_bytes().to_vec(),
    };
    // A bad conflist is refused before anything is touched.
    check_conflist(&conflist).map_err(|e| format!("the conflist: {e}"))?;
    let me = std::fs::read("/proc/self/exe").map_err(|e| format!("reading myself: {e}"))?;
    let plugin = o.bin_dir.join(PLUGIN_NAME);
    place(&plugin, &me, 0o755)?;
    eprintln!("podnet install-cni: installed {}", plugin.display());
    if o.plugin_only {
        return Ok(());
    }
    wait_for_subnet_file(&o.subnet_file);
    let target = o.conf_dir.join(&o.conflist_name);
    let done = install_conflist(&o.conf_dir, &o.conflist_name, &conflist)
        .map_err(|e| format!("{}: {e}", target.display()))?;
    eprintln!("podnet install-cni: installed {}", target.display());
    for path in done.removed {
        eprintln!(
            "podnet install-cni: removed an earlier release's {}",
            path.display()
        );
    }
    if !done.ahead.is_empty() {
        eprintln!(
            "podnet install-cni: warning: runtimes load the first config by name, and {} come before {}: remove them, or pods here get their network, not podnet's",
            done.ahead.join(", "),
            o.conflist_name
        );
    }
    Ok(())
}

fn place(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    install_atomic(path, bytes, mode).map_err(|e| format!("{}: {e}", path.display()))
}

/// Waits, as long as it takes, for podnetd's subnet file; says so once.
fn wait_for_subnet_file(path: &Path) {
    let mut said = false;
    loop {
        match std::fs::read_to_string(path).map(|raw| SubnetFile::parse(&raw)) {
            Ok(Ok(_)) => return,
            Ok(Err(why)) if !said => {
                eprintln!("podnet install-cni: waiting: {}: {why}", path.display())
            }
            Err(_) if !said => eprintln!(
                "podnet install-cni: waiting for {} (podnetd writes it once it holds \
                 the node's lease); the conflist goes in after it",
                path.display()
            ),
            _ => {}
        }
        said = true;
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Takes podnet off the node without stranding a pod. First the
/// conflist becomes the uninstalling one (ADD: try again later; DEL
/// works), so no new pod is attached and every pod's teardown still
/// succeeds. Then, once no podnet pod remains (at once, or with `--wait`
/// as they are deleted), the conflist, the plugin and the pods' nftables
/// tables go, as the registry says. With pods left and no `--wait`, it
/// stops after the first step and says so. Files and tables already gone
/// are no error.
fn uninstall(o: &Options) -> Result<(), String> {
    let target = o.conf_dir.join(&o.conflist_name);
    match std::fs::read(&target) {
        Ok(raw) if is_podnets(&raw) => {
            if let Some(swapped) = uninstalling(&raw).filter(|s| *s != raw) {
                place(&target, &swapped, 0o644)?;
                eprintln!(
                    "podnet uninstall-cni: {} now attaches no new pod (ADD: try again later); \
                     a pod's DEL still works",
                    target.display()
                );
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", target.display())),
    }
    let tables = |e: NetlinkError| format!("nftables: {e}");
    let mut nl = Netlink::open().map_err(tables)?;
    if registry::pods_remain(&mut nl).map_err(tables)? {
        if !o.wait {
            eprintln!(
                "podnet uninstall-cni: podnet pods remain on this node; the plugin and the \
                 conflist stay for their DEL. Delete them (kubectl drain), then run \
                 uninstall-cni again, or pass --wait"
            );
            return Ok(());
        }
        eprintln!("podnet uninstall-cni: waiting for this node's podnet pods to be deleted");
        while registry::pods_remain(&mut nl).map_err(tables)? {
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let former = remove_former_conflists(&o.conf_dir, &o.conflist_name)
        .map_err(|e| format!("{}: {e}", o.conf_dir.display()))?;
    for path in former {
        eprintln!("podnet uninstall-cni: removed {}", path.display());
    }
    for path in [target, o.bin_dir.join(PLUGIN_NAME)] {
        match std::fs::remove_file(&path) {
            Ok(()) => eprintln!("podnet uninstall-cni: removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    for t in registry::remove(registry::removable(false, false)).map_err(tables)? {
        eprintln!(
            "podnet uninstall-cni: removed table {} {}",
            t.family_name, t.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_and_defaults() {
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        let o = Options::parse(&args("--bin-dir /b --conf-dir /c --conflist /x.json")).unwrap();
        assert_eq!(o.bin_dir, PathBuf::from("/b"));
        assert_eq!(o.conf_dir, PathBuf::from("/c"));
        assert_eq!(o.conflist, Some(PathBuf::from("/x.json")));
        assert_eq!(o.conflist_name, "05-podnet.conflist");
        assert!(
            Options::parse(&args("--bin-dir"))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            Options::parse(&args("--nope 1"))
                .unwrap_err()
                .contains("--nope")
        );
        assert!(Options::parse(&args("--conflist-name a/b.conflist")).is_err());
        assert!(Options::parse(&args("--conflist-name podnet.conf")).is_err());
    }
}
