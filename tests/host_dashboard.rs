//! The web dashboard at `/`, loaded by headless Chromium from the agent's TCP listener: the
//! page itself needs no token and sends a strict CSP; with the token (given in the address's
//! fragment) it shows the process table, a process page with its history chart and tree, and
//! action buttons only when the caller may act; without it, it asks for the token.
use procman_tests::{
    chromium_dom, free_port, tcp_request, token_file, wait_until, Agent, TestRoot,
};
use std::{process::Command, time::Duration};

struct Dash {
    agent: Agent,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

fn start(token_allow: &str) -> Dash {
    start_with(token_allow, "")
}

/// With `extra` (TOML) after the `[api]` table.
fn start_with(token_allow: &str, extra: &str) -> Dash {
    let dir = tempfile::tempdir().unwrap();
    let (file, token) = token_file(dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = format!(
        "[monitor]\ninterval = \"500ms\"\n[api]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\ntoken_allow = [{token_allow}]\n{extra}",
        file.display()
    );
    Dash {
        agent: Agent::start(&cfg, &[]),
        addr,
        token,
        _dir: dir,
    }
}

#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn the_dashboard_shows_processes_and_a_process_page() {
    let d = start("");
    let me = std::process::id();
    // the static files need no token, carry the CSP; the API still needs the token
    let page = tcp_request(&d.addr, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("<title>procman</title>"),
        "{}",
        page.text
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(
        tcp_request(&d.addr, "GET", "/ui/app.js", &[], "").status,
        200
    );
    assert_eq!(
        tcp_request(&d.addr, "GET", "/api/processes", &[], "").status,
        401
    );
    wait_until(
        "history for the test process",
        Duration::from_secs(10),
        || {
            let a = tcp_request(
                &d.addr,
                "GET",
                &format!("/api/processes/{me}/history"),
                &[("Authorization", &format!("Bearer {}", d.token))],
                "",
            );
            match a.body["data_points"].as_u64() {
                Some(n) if n >= 2 => Ok(()),
                _ => Err(a.text),
            }
        },
    );
    let mut kid = Command::new("sleep").arg("600").spawn().unwrap();

    let url = format!("http://{}/#token={}&pid={me}", d.addr, d.token);
    let dom = chromium_dom(&url);
    // the screenshot CI keeps (target/dashboard.png; docs/dashboard.png is one of them)
    procman_tests::chromium_screenshot(
        &url,
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png"),
    );
    let _ = kid.kill();
    let _ = kid.wait();
    // the table: one row per process, ours among them
    assert!(
        dom.contains(&format!("data-pid=\"{me}\"")),
        "no row for pid {me}:\n{dom}"
    );
    assert!(dom.matches("<tr data-pid=").count() >= 10, "{dom}");
    assert!(dom.contains("CPUs"), "the host line: {dom}");
    assert!(dom.contains("token holder (TCP)"), "whoami: {dom}");
    // the process page: its details, the history chart, its children
    assert!(
        dom.contains(&format!("pid {me} ·")),
        "the process page: {dom}"
    );
    assert!(
        dom.contains("<polyline class=\"cpu\""),
        "the history chart: {dom}"
    );
    assert!(
        dom.contains(&format!("{} sleep", kid.id())),
        "its child in the tree: {dom}"
    );
    // the token may only read: no action buttons
    assert!(
        !dom.contains(">Freeze<") && !dom.contains(">Terminate<"),
        "{dom}"
    );
    assert!(
        dom.contains("id=\"error\" role=\"alert\" hidden"),
        "an error is shown: {dom}"
    );

    // a filter error is shown with the language's message
    drop(d.agent);
}

#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn without_the_token_the_page_asks_for_it_and_with_a_grant_offers_actions() {
    let d = start("\"freeze\"");
    let dom = chromium_dom(&format!("http://{}/", d.addr));
    assert!(
        dom.contains("<form id=\"login\">"),
        "the login form shows: {dom}"
    );
    assert!(
        !dom.contains("<tr data-pid="),
        "no data without the token: {dom}"
    );
    let me = std::process::id();
    let dom = chromium_dom(&format!("http://{}/#token={}&pid={me}", d.addr, d.token));
    assert!(
        dom.contains(">Freeze<"),
        "the freeze grant shows its button: {dom}"
    );
}

/// The services and policies tabs show their state; the service buttons appear with the
/// `service` grant.
#[test]
#[ignore = "needs root: loads BPF programs, starts a service in a cgroup under a private root"]
fn the_services_and_policies_tabs_show_their_state() {
    let root = TestRoot::new("dash-svc");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[cgroup]\nroot = \"{}\"\n[services]\nlog_dir = \"{}\"\nstate_dir = \"{}\"\n\
         [[service]]\nname = \"dsvc\"\nexec = [\"sleep\", \"600\"]\n\
         [[policy]]\nname = \"dpol\"\nmode = \"dry-run\"\nmatch = 'name == \"pmt-none\"'\nwhen = 'cpu > 90%'\nfor = \"5s\"\nthen = [\"term\"]\n",
        root.name,
        dir.path().join("logs").display(),
        dir.path().join("state").display()
    );
    let d = start_with("\"service\"", &extra);
    let dom = chromium_dom(&format!(
        "http://{}/#token={}&tab=services",
        d.addr, d.token
    ));
    assert!(
        dom.contains("data-service=\"dsvc\""),
        "the service's row: {dom}"
    );
    assert!(dom.contains("<td>running</td>"), "its state: {dom}");
    assert!(
        dom.contains(">restart<"),
        "the service grant shows its buttons: {dom}"
    );
    let dom = chromium_dom(&format!(
        "http://{}/#token={}&tab=policies",
        d.addr, d.token
    ));
    assert!(
        dom.contains("data-policy=\"dpol\""),
        "the policy's row: {dom}"
    );
    assert!(dom.contains("<td>dry-run</td>"), "its mode: {dom}");
    drop(d);
}
