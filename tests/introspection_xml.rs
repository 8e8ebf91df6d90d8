//! `dbus/org.kamal.Proxy1.xml` (installed under /usr/share/dbus-1/interfaces) must describe
//! the interface the daemon actually serves: the same methods with the same argument
//! signatures, the same properties and signals. The file adds documentation the daemon does
//! not introspect, so it is kept by hand; this test is what keeps it honest. A member added
//! to `src/control/interface.rs` fails here until it is documented in the XML.

mod support;

use std::collections::BTreeMap;

use support::Proxy;

const INTERFACE: &str = "org.kamal.Proxy1";

/// `attribute="value"` inside one tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(&tag[start..end])
}

/// The members of interface `org.kamal.Proxy1` in an introspection document, as
/// `"method Deploy(sasa{sv}) -> ()"`-style descriptions keyed by name.
fn members(xml: &str) -> BTreeMap<String, String> {
    let start = xml
        .find(&format!("<interface name=\"{INTERFACE}\""))
        .unwrap_or_else(|| panic!("no interface {INTERFACE} in:\n{xml}"));
    let body = &xml[start..start + xml[start..].find("</interface>").expect("closed")];
    let mut members = BTreeMap::new();
    for kind in ["method", "signal", "property"] {
        for chunk in body.split(&format!("<{kind} ")).skip(1) {
            let tag = format!(" {}", &chunk[..chunk.find('>').expect("tag ends")]);
            let name = attribute(&tag, "name").expect("member has a name");
            let description = if kind == "property" {
                format!(
                    "property {name}: {} ({})",
                    attribute(&tag, "type").unwrap_or("?"),
                    attribute(&tag, "access").unwrap_or("?")
                )
            } else {
                let end = chunk.find(&format!("</{kind}>")).unwrap_or(chunk.len());
                let (mut inputs, mut outputs) = (String::new(), String::new());
                for arg in chunk[..end].split("<arg ").skip(1) {
                    let arg = format!(" {}", &arg[..arg.find('>').expect("arg ends")]);
                    let signature = attribute(&arg, "type").expect("arg has a type");
                    match attribute(&arg, "direction") {
                        Some("out") => outputs.push_str(signature),
                        _ => inputs.push_str(signature),
                    }
                }
                format!("{kind} {name}({inputs}) -> ({outputs})")
            };
            members.insert(name.to_string(), description);
        }
    }
    members
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_exactly_the_interface_the_daemon_serves() {
    let proxy = Proxy::start();
    let stream = tokio::net::UnixStream::connect(proxy.socket_path())
        .await
        .expect("connect to the control socket");
    let connection = zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .build()
        .await
        .expect("p2p connection");
    let introspectable = zbus::fdo::IntrospectableProxy::builder(&connection)
        .destination("org.kamal.Proxy1")
        .unwrap()
        .path("/org/kamal/Proxy1")
        .unwrap()
        .build()
        .await
        .unwrap();
    let live = introspectable.introspect().await.expect("Introspect");
    let documented = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dbus/org.kamal.Proxy1.xml"
    ))
    .unwrap();
    assert_eq!(
        members(&documented),
        members(&live),
        "dbus/org.kamal.Proxy1.xml is out of step with the daemon (left: the file, right: \
         the daemon's Introspect); add or fix the member there, with its DocString"
    );
    assert!(
        documented.matches("org.freedesktop.DBus.DocString").count() >= members(&live).len(),
        "every member needs a DocString annotation"
    );
}
