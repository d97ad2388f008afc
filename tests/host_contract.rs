//! Seed 004's clients work unchanged: the live agent's answers carry every key of the
//! document's JSON examples (tests/fixtures/seed004), with the same JSON types and meaning,
//! over the TCP listener with a token; the document's curl examples run as written (plus the
//! token); a browser page on an allowed origin can fetch the API and one on another origin
//! cannot (CORS, headless Chromium). The OpenAPI document validates, and the live answers
//! match its schemas.
use procman_tests::{
    free_port, http_request, tcp_request, token_file, wait_until, Agent, Answer, TestRoot,
};
use serde_json::Value;
use std::{
    path::PathBuf,
    process::{Child, Command},
    time::Duration,
};

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/seed004")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The JSON type of a value, as a client written against the document would read it:
/// integers are kept apart from other numbers (a pid must stay an integer).
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Keys whose values are ISO 8601 times in the document.
const TIME_KEYS: [&str; 2] = ["timestamp", "started_at"];

/// Every key of `doc` is in `live` with the same JSON type (a float in the document also
/// accepts an integer-valued number: 0.0 serializes as 0.0 in procman but a client reading
/// "number" takes both); arrays: each live element against the document's first; times
/// parse as ISO 8601. Returns every difference, with its path.
fn conforms(doc: &Value, live: &Value, path: &str, out: &mut Vec<String>) {
    match (doc, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                let p = format!("{path}.{k}");
                match l.get(k) {
                    None => out.push(format!("{p}: missing")),
                    Some(lv) => {
                        if TIME_KEYS.contains(&k.as_str()) {
                            match lv
                                .as_str()
                                .map(str::parse::<procman_common::units::Timestamp>)
                            {
                                Some(Ok(_)) => {}
                                _ => out.push(format!("{p}: {lv} is not an ISO 8601 time")),
                            }
                        }
                        conforms(dv, lv, &p, out)
                    }
                }
            }
        }
        (Value::Array(d), Value::Array(l)) => {
            if let Some(first) = d.first() {
                for (i, lv) in l.iter().enumerate() {
                    conforms(first, lv, &format!("{path}[{i}]"), out);
                }
            }
        }
        (d, l) => {
            let (dt, lt) = (json_type(d), json_type(l));
            let ok = dt == lt || (dt == "number" && lt == "integer");
            if !ok {
                out.push(format!(
                    "{path}: {lt} ({l}) where the document has {dt} ({d})"
                ));
            }
        }
    }
}

#[track_caller]
fn assert_conforms(doc: &Value, live: &Value, what: &str) {
    let mut diffs = Vec::new();
    conforms(doc, live, "", &mut diffs);
    assert!(
        diffs.is_empty(),
        "{what} differs from seed 004's example:\n  {}\nlive answer: {live:#}",
        diffs.join("\n  ")
    );
}

/// An agent with the TCP listener on a free port, its token, and CORS for `origins`.
struct Tcp {
    agent: Agent,
    addr: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Tcp {
    fn start(origins: &[String]) -> Tcp {
        Tcp::start_with(origins, "")
    }

    /// With `extra` appended to the config (TOML).
    fn start_with(origins: &[String], extra: &str) -> Tcp {
        let dir = tempfile::tempdir().unwrap();
        let (file, token) = token_file(dir.path());
        let addr = format!("127.0.0.1:{}", free_port());
        let origins: Vec<String> = origins.iter().map(|o| format!("{o:?}")).collect();
        let cfg = format!(
            "[monitor]\ninterval = \"500ms\"\n[api]\nlisten = \"{addr}\"\ntoken_file = \"{}\"\ncors_origins = [{}]\n{extra}",
            file.display(),
            origins.join(", ")
        );
        Tcp {
            agent: Agent::start(&cfg, &[]),
            addr,
            token,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> Answer {
        let auth = format!("Bearer {}", self.token);
        tcp_request(&self.addr, "GET", path, &[("Authorization", &auth)], "")
    }
}

/// A child that spins on a CPU until dropped (no grandchildren: `sh` runs the loop itself).
struct Spinner(Child);

impl Spinner {
    fn start() -> Spinner {
        Spinner(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident bytes from /proc/PID/statm.
fn statm_rss(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096.0
}

/// Start time of a process from /proc (boot time + starttime ticks), Unix seconds.
fn proc_start(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let ticks: f64 = after.split_whitespace().nth(19).unwrap().parse().unwrap();
    let btime: f64 = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    btime + ticks / hz
}

fn iso(v: &Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse::<procman_common::units::Timestamp>()
        .unwrap_or_else(|e| panic!("{v}: {e}"))
        .unix()
}

/// A pid no process has (the top of the pid range is rarely reached).
fn unused_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (1..1000)
        .map(|i| max - i)
        .find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        .expect("a free pid near pid_max")
}

/// The list, one process, its history and its tree have the document's keys, types and
/// meaning, over TCP with the token.
#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn the_process_endpoints_answer_with_the_documents_shapes() {
    let t = Tcp::start(&[]);
    let spin = Spinner::start();
    let pid = spin.0.id();
    let me = std::process::id();

    // GET /api/processes: the spinner is among the top 10 by CPU, running
    let list = wait_until(
        "the spinner in top_cpu, running",
        Duration::from_secs(20),
        || {
            let a = t.get("/api/processes");
            let top = a.body["top_cpu"].as_array().cloned().unwrap_or_default();
            match top.iter().find(|p| p["pid"] == pid) {
                Some(p) if p["status"] == "running" && p["cpu_percent"].as_f64() > Some(50.0) => {
                    Ok(a.body)
                }
                _ => Err(format!("{} {}", a.status, a.body)),
            }
        },
    );
    let doc = fixture("processes.json");
    assert_conforms(&doc, &list, "GET /api/processes");
    // the document's top_ram has the entries' structure of top_cpu
    let entry = &doc["top_cpu"][0];
    for p in list["top_ram"].as_array().unwrap() {
        assert_conforms(entry, p, "a top_ram entry");
    }
    assert_eq!(list["top_cpu"].as_array().unwrap().len(), 10, "the top 10");
    assert_eq!(list["top_ram"].as_array().unwrap().len(), 10, "the top 10");
    let ram: Vec<f64> = list["top_ram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["memory_percent"].as_f64().unwrap())
        .collect();
    assert!(
        ram.windows(2).all(|w| w[0] >= w[1]),
        "top_ram by memory: {ram:?}"
    );
    let age = procman_common::units::Timestamp::now().unix() - iso(&list["timestamp"]);
    assert!(
        (0.0..5.0).contains(&age),
        "timestamp is now: {}",
        list["timestamp"]
    );
    let a = t.get("/api/processes?limit=3");
    assert_eq!(a.body["top_cpu"].as_array().unwrap().len(), 3, "{}", a.body);

    // GET /api/processes/{pid}
    let a = t.get(&format!("/api/processes/{pid}"));
    assert_eq!(a.status, 200, "{}", a.body);
    let d = a.body;
    assert_conforms(&fixture("process.json"), &d, "GET /api/processes/{pid}");
    assert_eq!(d["success"], true);
    assert_eq!(d["pid"], pid);
    assert_eq!(d["parent_pid"], me);
    assert_eq!(d["name"], "sh");
    assert_eq!(d["username"], "root");
    assert_eq!(d["num_threads"], 1);
    assert_eq!(d["status"], "running", "a busy loop: {d}");
    assert_eq!(d["cmdline"], "sh -c while :; do :; done");
    let (mb, want) = (d["memory_mb"].as_f64().unwrap(), statm_rss(pid) / 1048576.0);
    assert!(
        (mb - want).abs() <= want * 0.01,
        "memory_mb {mb} vs statm {want}"
    );
    let started = iso(&d["started_at"]);
    let want = proc_start(pid);
    assert!(
        (started - want).abs() < 0.02,
        "started_at {started} vs /proc {want}"
    );
    assert!(d["num_fds"].as_u64().unwrap() >= 3, "{d}");

    // the 404 (and a 400 for a pid that is not a number)
    let gone = unused_pid();
    let a = t.get(&format!("/api/processes/{gone}"));
    assert_eq!(a.status, 404, "{}", a.body);
    assert_conforms(&fixture("process_404.json"), &a.body, "the 404");
    assert_eq!(a.body["pid"], gone);
    assert_eq!(a.body["error"], "Process not found");
    let a = t.get("/api/processes/abc");
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["success"], false);

    // GET /api/processes/{pid}/history?hours=24 (and 24 by default)
    let h = wait_until("two history points", Duration::from_secs(20), || {
        let a = t.get(&format!("/api/processes/{pid}/history?hours=24"));
        match a.body["data_points"].as_u64() {
            Some(n) if n >= 2 => Ok(a.body),
            _ => Err(format!("{} {}", a.status, a.body)),
        }
    });
    assert_conforms(&fixture("history.json"), &h, "GET .../history");
    assert_eq!(h["pid"], pid);
    assert_eq!(h["hours"], 24.0);
    assert_eq!(
        h["data_points"].as_u64().unwrap() as usize,
        h["history"].as_array().unwrap().len()
    );
    assert!(h["statistics"]["max_cpu"].as_f64().unwrap() > 50.0, "{h}");
    let a = t.get(&format!("/api/processes/{pid}/history"));
    assert_eq!(a.body["hours"], 24.0, "the document's default: {}", a.body);

    // GET /api/processes/{pid}/tree: the test process's children include two sleeps
    let kids: Vec<Child> = (0..2)
        .map(|_| Command::new("sleep").arg("600").spawn().unwrap())
        .collect();
    let tree = wait_until("both sleeps in the tree", Duration::from_secs(10), || {
        let a = t.get(&format!("/api/processes/{me}/tree"));
        let pids: Vec<u64> = a.body["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["pid"].as_u64())
            .collect();
        if kids.iter().all(|k| pids.contains(&(k.id() as u64))) {
            Ok(a.body)
        } else {
            Err(format!("{} {}", a.status, a.body))
        }
    });
    for mut k in kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    assert_conforms(&fixture("tree.json"), &tree, "GET .../tree");
    assert_eq!(tree["pid"], me);
    assert_eq!(tree["parent"]["pid"], nix::unistd::getppid().as_raw());
    assert_eq!(
        tree["total_children"].as_u64().unwrap() as usize,
        tree["children"].as_array().unwrap().len()
    );
    drop(spin);
    drop(t);
}

/// The document's read-only curl examples, as written but for the address, the pid and the
/// token header, all succeed and print JSON through jq.
#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn the_documents_curl_examples_work() {
    let t = Tcp::start_with(&[], "token_allow = [\"kill\"]\n");
    let pid = std::process::id();
    wait_until(
        "the test process in the table",
        Duration::from_secs(10),
        || match t.get(&format!("/api/processes/{pid}/history")) {
            a if a.status == 200 => Ok(()),
            a => Err(format!("{} {}", a.status, a.body)),
        },
    );
    let script = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/seed004/curl.sh"),
    )
    .unwrap();
    let commands: Vec<String> = script
        .replace("\\\n", " ")
        .lines()
        .filter(|l| l.starts_with("curl "))
        .map(|l| {
            l.replacen(
                "curl ",
                &format!("curl -sf -H 'Authorization: Bearer {}' ", t.token),
                1,
            )
            .replace("http://localhost:8754", &format!("http://{}", t.addr))
        })
        .collect();
    assert_eq!(commands.len(), 6, "{commands:?}");
    for c in commands {
        // the reads look at the test process; each kill gets a process of its own
        let mut victim = None;
        let target = if c.contains("-X POST") {
            let v = KillOnDrop(Command::new("sleep").arg("600").spawn().unwrap());
            let p = v.0.id();
            victim = Some(v);
            p
        } else {
            pid
        };
        let c = c.replace("/processes/1234", &format!("/processes/{target}"));
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &c])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.trim_start().starts_with('{'),
            "{c}: {}\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(mut v) = victim {
            let answer: Value = serde_json::from_str(&text).unwrap();
            assert_conforms(&fixture("kill_200.json"), &answer, "POST .../kill");
            assert_eq!(answer["success"], true, "{answer}");
            assert_eq!(
                answer["forced"],
                c.contains("\"force\": true"),
                "{c}: {answer}"
            );
            assert_eq!(
                answer["message"],
                format!("Process sleep (PID: {target}) terminated successfully")
            );
            let st = v.0.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            let want = if c.contains("\"force\": true") {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            };
            assert_eq!(st.signal(), Some(want), "{c}: {answer}");
        }
    }
}

/// CORS on the TCP listener: an allowed origin gets its preflight answered (with the
/// Authorization header allowed) and `Access-Control-Allow-Origin` on answers, never with
/// credentials; another origin gets neither; the Unix socket has no CORS at all.
#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn cors_allows_only_the_configured_origins() {
    let ok = "http://dash.example:3000".to_string();
    let t = Tcp::start(std::slice::from_ref(&ok));
    let preflight = |origin: &str| {
        tcp_request(
            &t.addr,
            "OPTIONS",
            "/api/processes",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "GET"),
                ("Access-Control-Request-Headers", "authorization"),
            ],
            "",
        )
    };
    let a = preflight(&ok);
    assert!(a.status < 300, "{a:?}");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some(ok.as_str()),
        "{a:?}"
    );
    assert!(
        a.header("access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")),
        "{a:?}"
    );
    assert_eq!(a.header("access-control-allow-credentials"), None, "{a:?}");
    let a = preflight("http://evil.example");
    assert_eq!(a.header("access-control-allow-origin"), None, "{a:?}");

    let auth = format!("Bearer {}", t.token);
    let get = |origin: &str| {
        tcp_request(
            &t.addr,
            "GET",
            "/api/processes",
            &[("Origin", origin), ("Authorization", &auth)],
            "",
        )
    };
    let a = get(&ok);
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), Some(ok.as_str()));
    let a = get("http://evil.example");
    assert_eq!(a.header("access-control-allow-origin"), None, "{a:?}");
    // without the token: 401, still readable by the allowed page (it can show why)
    let a = tcp_request(&t.addr, "GET", "/api/processes", &[("Origin", &ok)], "");
    assert_eq!(a.status, 401);
    assert_eq!(a.header("access-control-allow-origin"), Some(ok.as_str()));
    assert_eq!(a.body["success"], false);

    let s = std::os::unix::net::UnixStream::connect(&t.agent.socket).unwrap();
    let a = procman_tests::http_request(s, "GET", "/api/status", &[("Origin", &ok)], "");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("access-control-allow-origin"), None, "{a:?}");
}

/// Serves one HTML page on `port` (every request gets it) until the process ends.
fn serve_page(port: u16, html: String) {
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{html}",
                html.len()
            );
        }
    });
}

/// The page's title after its script ran, from headless Chromium's DOM dump.
fn chromium_title(url: &str) -> String {
    let dom = procman_tests::chromium_dom(url);
    dom.split_once("<title>")
        .and_then(|(_, r)| r.split_once("</title>"))
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| panic!("no title in chromium's DOM: {dom}"))
}

/// A browser page on an allowed origin fetches `/api/processes` from the agent (seed 004's
/// frontend code, plus the token header); the same page served from another origin is
/// refused by the browser.
#[test]
#[ignore = "needs root: loads BPF programs; the token file must be owned by root"]
fn a_browser_page_on_an_allowed_origin_can_fetch_and_another_cannot() {
    let (allowed, other) = (free_port(), free_port());
    let t = Tcp::start(&[format!("http://127.0.0.1:{allowed}")]);
    let html = format!(
        r#"<!doctype html><html><head><title>pending</title></head><body><script>
fetch('http://{addr}/api/processes', {{ headers: {{ 'Authorization': 'Bearer {token}' }} }})
  .then(r => r.json())
  .then(data => {{ document.title = 'OK ' + data.top_cpu.length + ' ' + data.top_cpu[0].cpu_percent; }})
  .catch(e => {{ document.title = 'ERR ' + e; }});
</script></body></html>"#,
        addr = t.addr,
        token = t.token
    );
    serve_page(allowed, html.clone());
    serve_page(other, html);
    let title = chromium_title(&format!("http://127.0.0.1:{allowed}/"));
    assert!(title.starts_with("OK 10 "), "allowed origin: {title}");
    let title = chromium_title(&format!("http://127.0.0.1:{other}/"));
    assert!(title.starts_with("ERR TypeError"), "other origin: {title}");
}

/// The checked-in OpenAPI document.
fn checked_in_openapi() -> (PathBuf, Value) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, v)
}

/// `docs/openapi.json` is a valid OpenAPI document, by PyPI's openapi-spec-validator (the
/// specification's schema, `$ref`s resolved, path parameters declared). `cargo xtask test`
/// and `cargo xtask openapi` install it into `target/validators-venv`.
#[test]
fn the_openapi_document_validates() {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target
    let target = exe.ancestors().nth(3).expect("the target directory");
    let validator = target.join("validators-venv/bin/openapi-spec-validator");
    assert!(
        validator.exists(),
        "{} is missing: `cargo xtask openapi` (or `cargo xtask test`) installs it",
        validator.display()
    );
    let (doc, _) = checked_in_openapi();
    let out = Command::new(&validator).arg(&doc).output().unwrap();
    assert!(
        out.status.success(),
        "{} does not validate:\n{}{}",
        doc.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The schema of `METHOD path`'s answer with `status`, from an OpenAPI document, as a JSON
/// Schema whose `#/components/...` references resolve within the document.
fn response_schema(doc: &Value, method: &str, path: &str, status: &str) -> Value {
    let answer = &doc["paths"][path][method.to_ascii_lowercase()]["responses"][status];
    let answer = match answer["$ref"].as_str() {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
        None => answer,
    };
    let schema = &answer["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "no JSON schema for {method} {path} {status} in the document"
    );
    let mut root = schema.as_object().unwrap().clone();
    root.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    root.insert("components".into(), doc["components"].clone());
    Value::Object(root)
}

/// Every difference between `live` and the document's schema for `METHOD path` `status`.
fn schema_errors(doc: &Value, method: &str, path: &str, status: &str, live: &Value) -> Vec<String> {
    let schema = response_schema(doc, method, path, status);
    let v = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the schema of {method} {path} {status}: {e}"));
    v.iter_errors(live)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_matches_schema(doc: &Value, method: &str, path: &str, status: &str, live: &Answer) {
    assert_eq!(
        live.status.to_string(),
        status,
        "{method} {path}: {}",
        live.body
    );
    let errors = schema_errors(doc, method, path, status, &live.body);
    assert!(
        errors.is_empty(),
        "{method} {path} ({status}) does not match its OpenAPI schema:\n  {}\nlive answer: {:#}",
        errors.join("\n  "),
        live.body
    );
}

/// The live agent serves the checked-in document, and its answers for the read endpoints
/// (with a busy process, its history, a tree, a slice) match the served
/// document's response schemas; every described path is routed.
#[test]
#[ignore = "needs root: loads BPF programs, creates a cgroup slice; the token file must be owned by root"]
fn live_answers_match_the_served_openapi_schemas() {
    let root = TestRoot::new("openapi");
    let t = Tcp::start_with(
        &[],
        &format!(
            "[cgroup]\nroot = \"{}\"\n[[slice]]\nname = \"schema\"\n",
            root.name
        ),
    );
    let served = t.get("/api/openapi.json");
    assert_eq!(served.status, 200, "{}", served.body);
    let (file, checked_in) = checked_in_openapi();
    assert!(
        served.body == checked_in,
        "the agent serves another document than {}: regenerate it (cargo xtask openapi)",
        file.display()
    );
    let doc = served.body;

    let spin = Spinner::start();
    let pid = spin.0.id();
    let me = std::process::id();
    let kid = Command::new("sleep").arg("600").spawn().unwrap();
    let _kid = KillOnDrop(kid);
    // the spinner sampled twice (its history has points), the sleep in the tree
    wait_until(
        "the spinner's history and the sleep in the tree",
        Duration::from_secs(20),
        || {
            let h = t.get(&format!("/api/processes/{pid}/history"));
            let tr = t.get(&format!("/api/processes/{me}/tree"));
            let kids = tr.body["total_children"].as_u64().unwrap_or(0);
            match h.body["data_points"].as_u64() {
                Some(n) if n >= 2 && kids >= 1 => Ok(()),
                _ => Err(format!("{} {}", h.status, h.body)),
            }
        },
    );
    let gets = [
        ("/api/status", "/api/status".to_string()),
        ("/api/system", "/api/system".to_string()),
        ("/api/processes", "/api/processes".to_string()),
        (
            "/api/processes",
            "/api/processes?sort=mem&limit=50".to_string(),
        ),
        ("/api/processes/{pid}", format!("/api/processes/{pid}")),
        (
            "/api/processes/{pid}/history",
            format!("/api/processes/{pid}/history?hours=24"),
        ),
        (
            "/api/processes/{pid}/tree",
            format!("/api/processes/{me}/tree"),
        ),
        ("/api/tree", format!("/api/tree?root={me}")),
        ("/api/slices", "/api/slices".to_string()),
        ("/api/placement", "/api/placement".to_string()),
    ];
    for (template, path) in &gets {
        let a = t.get(path);
        assert_matches_schema(&doc, "GET", template, "200", &a);
    }
    // a change (root, on the socket) and the audit log that records it
    // (no limits: hosts with a hybrid cgroup layout offer no controller to cgroup2)
    let a = unix(&t, "POST", "/api/slices/schema", "");
    assert_matches_schema(&doc, "POST", "/api/slices/{name}", "200", &a);
    let a = unix(
        &t,
        "POST",
        "/api/slices/schema",
        r#"{"limits": {"Bogus": "1"}}"#,
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        schema_errors(&doc, "POST", "/api/slices/{name}", "400", &a.body).is_empty(),
        "{}",
        a.body
    );
    let a = unix(&t, "GET", "/api/audit", "");
    assert!(!a.body.as_array().unwrap().is_empty(), "{}", a.body);
    assert_matches_schema(&doc, "GET", "/api/audit", "200", &a);
    // the slice is there, so SliceInfo's schema was exercised
    let slices = t.get("/api/slices").body;
    assert!(
        slices
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "schema"),
        "{slices}"
    );
    // the errors: 404 and 400 bodies
    let gone = unused_pid();
    let a = t.get(&format!("/api/processes/{gone}"));
    assert_matches_schema(&doc, "GET", "/api/processes/{pid}", "404", &a);
    let a = t.get("/api/processes/abc");
    assert_matches_schema(&doc, "GET", "/api/processes/{pid}", "400", &a);
    let a = tcp_request(&t.addr, "GET", "/api/status", &[], "");
    assert_matches_schema(&doc, "GET", "/api/status", "401", &a);
    // a schema that would not match is caught (the check is not vacuous)
    let mut bad = t.get(&format!("/api/processes/{pid}")).body;
    bad["status"] = "spinning".into();
    bad["started_at"] = 1.5.into();
    assert_eq!(
        schema_errors(&doc, "GET", "/api/processes/{pid}", "200", &bad).len(),
        2,
        "{bad}"
    );

    // every described path is routed: HEAD (a read, answered for GET routes, 405 for the
    // others) with real values never falls through to the "no such endpoint" 404
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{pid}", &pid.to_string())
            .replace("{name}", "schema");
        let a = unix(&t, "HEAD", &concrete, "");
        let want = if item.get("get").is_some() { 200 } else { 405 };
        if want == 200 && a.status == 404 {
            // the handler's own 404 (e.g. no service named "schema"), not the router's
            let g = unix(&t, "GET", &concrete, "");
            let e = g.body["error"].as_str().unwrap_or_default();
            assert!(
                g.status == 404 && !e.starts_with("no such endpoint"),
                "GET {concrete} (described as {path}) is not routed: {}",
                g.text
            );
            continue;
        }
        assert_eq!(a.status, want, "HEAD {concrete} (described as {path})");
    }
    drop(spin);
}

/// One request on the agent's Unix socket (as the test's user: root).
fn unix(t: &Tcp, method: &str, path: &str, body: &str) -> Answer {
    let s = std::os::unix::net::UnixStream::connect(&t.agent.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    http_request(s, method, path, &[], body)
}

/// Kills and reaps a child when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
