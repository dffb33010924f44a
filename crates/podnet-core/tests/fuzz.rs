//! Every parser of podnet-core, fuzzed (see podnet_testkit::fuzz): the CNI
//! config (with prevResult and the GC attachment list), CNI_ARGS, a
//! conflist, net-conf, the subnet file, the IPAM state and a lease record.

#![allow(clippy::unwrap_used)]

use podnet_core::cluster::lease::Lease;
use podnet_core::cluster::netconf::ClusterConf;
use podnet_core::cni::args::CniArgs;
use podnet_core::cni::config::NetConf;
use podnet_core::cni::conflist::check_conflist;
use podnet_core::ipam::IpamState;
use podnet_core::subnet_file::SubnetFile;
use podnet_testkit::fuzz::{config, input};
use proptest::prelude::*;

const CNI_CONFIG: &[u8] = br#"{"cniVersion":"1.1.0","name":"podnet","type":"podnet","bridge":"podnet0","mtu":1450,
"ipam":{"type":"podnet","ranges":[[{"subnet":"10.244.1.0/24","rangeStart":"10.244.1.10"}],[{"subnet":"fd00::/64"}]],"routes":[{"dst":"0.0.0.0/0"}]},
"runtimeConfig":{"ips":["10.244.1.9/24"],"mac":"02:00:00:00:00:01","portMappings":[{"hostPort":80,"containerPort":8080,"protocol":"tcp"}]},
"prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"02:00:00:00:00:01","sandbox":"/var/run/netns/x"}],
"ips":[{"address":"10.244.1.9/24","gateway":"10.244.1.1","interface":0}],"routes":[{"dst":"0.0.0.0/0"}]},
"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}"#;
const CNI_ARGS: &[u8] = b"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1234";
const CONFLIST: &[u8] = br#"{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"podnet"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;
const NET_CONF: &[u8] = br#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.200.0","EnableIPv6":true,"IPv6Network":"fd00:244::/56","IPv6SubnetLen":64,"LeaseTTL":3600,"Backend":{"Type":"vxlan","VNI":1,"Port":8472,"DirectRouting":true}}"#;
const SUBNET_FILE: &[u8] = br#"{"version":1,"clusterCidrs":["10.244.0.0/16"],"nodeSubnets":[{"subnet":"10.244.1.0/24","gateway":"10.244.1.1"}],"mtu":1450}"#;
const IPAM_STATE: &[u8] = br#"{"version":1,"allocations":{"10.244.1.2":{"containerId":"c1","ifname":"eth0"}},"lastReserved":{"10.244.1.2-10.244.1.254":"10.244.1.2"},"bootId":"b"}"#;
const LEASE: &[u8] = br#"{"node":"node1","subnets":["10.244.1.0/24"],"expires":1999999999,"PublicIP":"192.168.1.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cni_config(b in input(CNI_CONFIG)) {
        let _ = NetConf::parse(&b);
    }

    #[test]
    fn cni_args(b in input(CNI_ARGS)) {
        let _ = CniArgs::parse(&text(&b));
    }

    #[test]
    fn conflist(b in input(CONFLIST)) {
        let _ = check_conflist(&b);
    }

    #[test]
    fn net_conf(b in input(NET_CONF)) {
        let _ = ClusterConf::parse_lenient(&text(&b));
    }

    #[test]
    fn subnet_file(b in input(SUBNET_FILE)) {
        let _ = SubnetFile::parse(&text(&b));
    }

    #[test]
    fn ipam_state(b in input(IPAM_STATE)) {
        if let Ok(state) = serde_json::from_slice::<IpamState>(&b) {
            let _ = state.in_boot("another boot");
        }
    }

    #[test]
    fn lease_record(b in input(LEASE)) {
        let _ = serde_json::from_slice::<Lease>(&b);
    }
}

/// The samples are valid: the mutations start from real inputs.
#[test]
fn the_samples_parse() {
    NetConf::parse(CNI_CONFIG).unwrap();
    CniArgs::parse(&text(CNI_ARGS)).unwrap();
    check_conflist(CONFLIST).unwrap();
    ClusterConf::parse(&text(NET_CONF)).unwrap();
    SubnetFile::parse(&text(SUBNET_FILE)).unwrap();
    serde_json::from_slice::<IpamState>(IPAM_STATE).unwrap();
    serde_json::from_slice::<Lease>(LEASE).unwrap();
}
