//! Who may do what: peer credentials of each API connection (SO_PEERCRED, read once when the
//! connection is accepted) checked against the `[[access]]` grants of the config, per request.
//!
//! - root (uid 0): everything.
//! - anyone else who can open the socket (the `agent.socket_group`): read-only, unless a grant
//!   names them (by user or group) with actions; `only_own = true` limits those actions to
//!   processes they own (the uid rule of kill(1)).
//! - non-root readers do not see other users' command lines, working directories or fds
//!   (like `hidepid=2`).
//!
//! The API asks [`Policy::check`] once per request, with the [`Action`] its route needs; a
//! denial is a 403 with the reason, and an audit line.
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::{collections::HashSet, fmt};

/// What a request does. Reads need nothing; every other action must be granted to non-root
/// callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// GET endpoints.
    Read,
    /// Create slices, set or lift limits (`procman limit`, `unlimit`, `POST /api/slices`).
    Limit,
    /// Move processes into slices (`procman limit --pid` moves as well as limits).
    Move,
    /// Freeze and thaw slices.
    Freeze,
    /// End processes (signals, `cgroup.kill`).
    Kill,
    /// Run commands in slices (`procman run`).
    Run,
    /// Manage services.
    Service,
    /// Change policies.
    Policy,
    /// Read the audit log.
    Audit,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Read,
        Action::Limit,
        Action::Move,
        Action::Freeze,
        Action::Kill,
        Action::Run,
        Action::Service,
        Action::Policy,
        Action::Audit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Limit => "limit",
            Action::Move => "move",
            Action::Freeze => "freeze",
            Action::Kill => "kill",
            Action::Run => "run",
            Action::Service => "service",
            Action::Policy => "policy",
            Action::Audit => "audit",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[access]]`: a grant of actions to users and/or groups.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantConfig {
    /// User names or uids.
    #[serde(default)]
    pub users: Vec<String>,
    /// Group names or gids (primary or supplementary).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The actions granted, e.g. `["limit", "freeze"]`.
    pub allow: Vec<Action>,
    /// Only on processes the caller owns (and slices holding only such processes).
    #[serde(default)]
    pub only_own: bool,
}

/// A validated grant: names resolved to ids once, at load.
#[derive(Debug, Clone)]
struct Grant {
    uids: HashSet<u32>,
    gids: HashSet<u32>,
    allow: HashSet<Action>,
    only_own: bool,
}

/// The access policy of the running config.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    grants: Vec<Grant>,
    /// What the holder of the API token (TCP clients) may do besides reading.
    token_allow: HashSet<Action>,
}

/// The other end of an API connection: a local process (SO_PEERCRED on the Unix socket), or
/// a TCP client (`remote` set; its uid and gid are [`Peer::NOBODY`], it is identified by the
/// bearer token of each request instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<std::net::SocketAddr>,
}

impl Peer {
    /// The uid and gid of a TCP client: no local user has them.
    pub const NOBODY: u32 = u32::MAX;

    /// A TCP client.
    pub fn tcp(addr: std::net::SocketAddr) -> Peer {
        Peer {
            uid: Self::NOBODY,
            gid: Self::NOBODY,
            pid: None,
            remote: Some(addr),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0 && self.remote.is_none()
    }

    /// Supplementary groups of the peer, from /proc/PID/status (`Groups:`).
    fn groups(&self) -> Vec<u32> {
        let Some(pid) = self.pid else {
            return Vec::new();
        };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("Groups:").map(|g| {
                        g.split_whitespace()
                            .filter_map(|x| x.parse().ok())
                            .collect()
                    })
                })
            })
            .unwrap_or_default()
    }
}

impl Peer {
    /// The credentials of the process that connected `stream` (SO_PEERCRED).
    pub fn of(stream: &tokio::net::UnixStream) -> Peer {
        match stream.peer_cred() {
            Ok(c) => Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
                remote: None,
            },
            // cannot happen on a Unix socket; treat as the least privileged caller
            Err(_) => Peer {
                uid: Self::NOBODY,
                gid: Self::NOBODY,
                pid: None,
                remote: None,
            },
        }
    }
}

/// What an allowed request may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// `Some(uid)`: only processes of this uid (a grant with `only_own`).
    pub only_uid: Option<u32>,
    /// Whether the caller sees every process's command line (root).
    pub sees_all: bool,
    pub peer: Peer,
}

/// Compares a presented token with the configured one in time independent of where they
/// differ (no early exit), so the token cannot be guessed byte by byte.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(presented.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

/// A refused request: why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

fn resolve(
    what: &str,
    names: &[String],
    lookup: impl Fn(&str) -> Option<u32>,
) -> Result<HashSet<u32>> {
    names
        .iter()
        .map(|n| match n.parse::<u32>().ok().or_else(|| lookup(n)) {
            Some(id) => Ok(id),
            None => bail!("[[access]] {what} = {n:?}: no such {what}"),
        })
        .collect()
}

impl Policy {
    /// Validates the `[[access]]` grants (names must exist, each grant names someone and
    /// allows something).
    pub fn from_config(grants: &[GrantConfig]) -> Result<Policy> {
        let mut out = Vec::new();
        for (i, g) in grants.iter().enumerate() {
            if g.users.is_empty() && g.groups.is_empty() {
                bail!("[[access]] #{}: name users or groups to grant to", i + 1);
            }
            if g.allow.is_empty() {
                bail!(
                    "[[access]] #{}: allow is empty; list actions: limit, move, freeze, kill, run, service, policy, audit",
                    i + 1
                );
            }
            out.push(Grant {
                uids: resolve("user", &g.users, |n| {
                    nix::unistd::User::from_name(n)
                        .ok()
                        .flatten()
                        .map(|u| u.uid.as_raw())
                })?,
                gids: resolve("group", &g.groups, |n| {
                    nix::unistd::Group::from_name(n)
                        .ok()
                        .flatten()
                        .map(|g| g.gid.as_raw())
                })?,
                allow: g.allow.iter().copied().collect(),
                only_own: g.only_own,
            });
        }
        Ok(Policy {
            grants: out,
            token_allow: HashSet::new(),
        })
    }

    /// The actions a TCP client with a valid token may take besides reading.
    pub fn with_token_allow(mut self, allow: &[Action]) -> Policy {
        self.token_allow = allow.iter().copied().collect();
        self
    }

    /// Whether `peer` may do `action`, and within which scope. A TCP peer must have shown
    /// the API token already (the API checks it per request).
    pub fn check(&self, peer: Peer, action: Action) -> Result<Scope, Denied> {
        if peer.remote.is_some() {
            // the token holder: a reader that sees everything, plus the granted actions
            if action == Action::Read || self.token_allow.contains(&action) {
                return Ok(Scope {
                    only_uid: None,
                    sees_all: true,
                    peer,
                });
            }
            return Err(Denied(format!(
                "the API token may not {action}: add \"{action}\" to [api] token_allow in the agent's config"
            )));
        }
        let scope = |only_uid| Scope {
            only_uid,
            sees_all: peer.is_root(),
            peer,
        };
        if peer.is_root() || action == Action::Read {
            return Ok(scope(None));
        }
        let groups = if self.grants.iter().any(|g| !g.gids.is_empty()) {
            peer.groups()
        } else {
            Vec::new()
        };
        let applies = |g: &&Grant| {
            g.allow.contains(&action)
                && (g.uids.contains(&peer.uid)
                    || g.gids.contains(&peer.gid)
                    || groups.iter().any(|x| g.gids.contains(x)))
        };
        // a grant without only_own wins over one with it
        let mut best: Option<&Grant> = None;
        for g in self.grants.iter().filter(applies) {
            if best.is_none_or(|b| b.only_own && !g.only_own) {
                best = Some(g);
            }
        }
        match best {
            Some(g) => Ok(scope(g.only_own.then_some(peer.uid))),
            None => Err(Denied(format!(
                "uid {} may not {action}: only root may, unless an [[access]] grant in the agent's \
                 config allows \"{action}\" to this user or one of its groups",
                peer.uid
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
            remote: None,
        }
    }

    #[test]
    fn token_holders_read_and_take_only_granted_actions() {
        let p = Policy::default().with_token_allow(&[Action::Freeze]);
        let tcp = Peer::tcp("127.0.0.1:9".parse().unwrap());
        assert!(!tcp.is_root());
        assert!(p.check(tcp, Action::Read).unwrap().sees_all);
        assert!(p.check(tcp, Action::Freeze).is_ok());
        let e = p.check(tcp, Action::Kill).unwrap_err();
        assert!(e.0.contains("token_allow"), "{e}");
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
        assert!(!token_matches(b"abcd", b"abc"));
        assert!(!token_matches(b"", b"abc"));
    }

    #[test]
    fn root_may_everything_others_read_only_unless_granted() {
        let p = Policy::from_config(&[
            GrantConfig {
                users: vec!["4242".into()],
                allow: vec![Action::Limit, Action::Freeze],
                only_own: true,
                ..Default::default()
            },
            GrantConfig {
                groups: vec!["4343".into()],
                allow: vec![Action::Freeze],
                ..Default::default()
            },
        ])
        .unwrap();
        assert_eq!(p.check(peer(0, 0), Action::Kill).unwrap().only_uid, None);
        assert!(p.check(peer(1000, 1000), Action::Read).is_ok());
        let e = p.check(peer(1000, 1000), Action::Limit).unwrap_err();
        assert!(e.0.contains("may not limit"), "{e}");
        let s = p.check(peer(4242, 1), Action::Limit).unwrap();
        assert_eq!(s.only_uid, Some(4242));
        assert!(!s.sees_all);
        assert!(p.check(peer(4242, 1), Action::Kill).is_err());
        // the group grant has no only_own, so it wins for freeze
        assert_eq!(
            p.check(peer(4242, 4343), Action::Freeze).unwrap().only_uid,
            None
        );
    }

    #[test]
    fn bad_grants_are_refused() {
        let e = Policy::from_config(&[GrantConfig {
            users: vec!["no-such-user-procman".into()],
            allow: vec![Action::Limit],
            ..Default::default()
        }])
        .unwrap_err();
        assert!(e.to_string().contains("no-such-user-procman"), "{e}");
        assert!(Policy::from_config(&[GrantConfig {
            allow: vec![Action::Limit],
            ..Default::default()
        }])
        .is_err());
        let t: Result<GrantConfig, _> = toml::from_str("users = [\"root\"]\nallow = [\"reboot\"]");
        assert!(t.unwrap_err().to_string().contains("reboot"));
    }
}
