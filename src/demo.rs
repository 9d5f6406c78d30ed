//! `capi-ws demo` (`make run`): the gateway on its embedded default plus two built-in echo
//! nodes on loopback, declared as the static service `echo/dev`; prints ready-to-paste URLs.
//! No Consul, nothing to install.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::cli::RunArgs;
use crate::config::{self, StaticService};

/// Echo nodes started by the demo.
const DEMO_NODES: usize = 2;

pub fn run_demo(args: &RunArgs) -> i32 {
    let mut settings = match config::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("capi-ws demo: invalid configuration:\n{e}");
            return 2;
        }
    };
    // The demo is for one machine: loopback unless --host says otherwise.
    if args.host.is_none() {
        settings.host = "127.0.0.1".to_string();
    }
    let mut nodes = Vec::with_capacity(DEMO_NODES);
    for _ in 0..DEMO_NODES {
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        match crate::echo::spawn_echo(listen, 1, settings.driver) {
            Ok(addr) => nodes.push(addr),
            Err(e) => {
                eprintln!("capi-ws demo: cannot start an echo node: {e}");
                return 1;
            }
        }
    }
    for addr in &nodes {
        settings.services.push(StaticService {
            name: "echo".to_string(),
            address: addr.ip().to_string(),
            port: addr.port(),
            meta: BTreeMap::from([
                ("group".to_string(), "dev".to_string()),
                ("type".to_string(), "websocket".to_string()),
            ]),
        });
    }
    let route = format!("{}/echo/dev/", settings.context_path);
    crate::serve(settings, move |workers| {
        let ws = workers.ws_addr;
        let list: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        println!();
        println!(
            "capi-ws demo is up: gateway ws://{ws}, echo nodes {}",
            list.join(" and ")
        );
        println!();
        println!("  Service echo/dev (2 nodes, round-robin):  ws://{ws}{route}");
        println!("  Health probe:                             curl -i http://{ws}/health");
        println!();
        println!("  From a browser console (any page):");
        println!(
            "    const ws = new WebSocket(\"ws://{ws}{route}\"); ws.onmessage = e => console.log(\"echo:\", e.data); ws.onopen = () => ws.send(\"hello capi-ws\");"
        );
        println!("  From a terminal (if you have websocat):  websocat ws://{ws}{route}");
        println!();
        println!("Ctrl-C stops it.");
    })
}
