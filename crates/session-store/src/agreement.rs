//! Whether this instance's deployment secrets agree with those of every other live instance, and
//! which secret writes (tags new sessions, signs page tokens).
//!
//! Every instance registers, every `secret.agreement_interval`, what it knows in one Valkey hash
//! (`<prefix>_secrets`, a field per distinct set: `<writing>|<known,...>` by fingerprint, its
//! value the time it was last seen). An instance writes with the first of its secrets (in the
//! configured order, newest first) that every live instance knows, and it can only run beside
//! instances whose writing secret it knows: so a rotation rolls out with the new secret listed
//! first and the old one second, and the fleet switches to the new one once no instance without
//! it is left. An instance that cannot agree does not register (it cannot poison the others),
//! refuses everything that needs the secret (UNAVAILABLE, DEPLOYMENT_SECRET_DISAGREEMENT), says so
//! in its health, log and `session_secret_agreement`, and looks again at every interval.
//! docs/security.md ("The deployment secret").

use std::{collections::HashMap, sync::Arc, time::Duration};

use fred::interfaces::{HashesInterface, KeysInterface};

use session_core::{Error, now_ms};

use crate::{
    SessionStore,
    secret::{Keys, Secret},
};

/// The secrets of this instance and what it last found out about the others.
pub(crate) struct Keyring {
    /// From `secret.file` / `secret.keys`, newest first; empty when the secret lives in Valkey.
    configured: Vec<Secret>,
    /// The hash instances register in.
    fleet_key: String,
    /// How often instances register; an entry older than a few of these is gone.
    interval: Duration,
    state: std::sync::RwLock<State>,
    /// The first check, run once however many requests wait for it.
    first: tokio::sync::Mutex<()>,
    /// Whether the periodic check runs.
    running: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    /// What the last agreeing check chose; `None` before the first.
    keys: Option<Arc<Keys>>,
    /// Why this instance disagrees with the others, while it does.
    disagreement: Option<String>,
    /// Where the secret lives in Valkey: the one this instance uses.
    stored: Option<Secret>,
    /// The field this instance registered last (identical instances share it).
    field: Option<String>,
}

impl Keyring {
    /// Whether the secrets come from the configuration (not from Valkey).
    pub(crate) fn configured(&self) -> bool {
        !self.configured.is_empty()
    }

    /// A keyring registering in `fleet_key`; `configured` empty means the secret lives in Valkey.
    pub(crate) fn new(configured: Vec<Secret>, fleet_key: String, interval: Duration) -> Self {
        Self {
            configured,
            fleet_key,
            interval,
            state: std::sync::RwLock::default(),
            first: tokio::sync::Mutex::new(()),
            running: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// After how long an instance that stopped registering no longer counts.
    fn stale(&self) -> Duration {
        self.interval * 3 + Duration::from_secs(2)
    }

    fn current(&self) -> Option<Result<Arc<Keys>, Error>> {
        let state = self.state.read().expect("keyring lock");
        if let Some(why) = &state.disagreement {
            return Some(Err(Error::SecretsDisagree(why.clone())));
        }
        state.keys.clone().map(Ok)
    }
}

/// One registered instance (or set of identical ones), by fingerprints.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    writing: String,
    known: Vec<String>,
}

impl Entry {
    fn field(&self) -> String {
        let mut known = self.known.clone();
        known.sort();
        format!("{}|{}", self.writing, known.join(","))
    }

    fn parse(field: &str) -> Option<Self> {
        let (writing, known) = field.split_once('|')?;
        let known: Vec<String> = known.split(',').map(str::to_owned).collect();
        (!writing.is_empty() && known.contains(&writing.to_owned())).then(|| Self {
            writing: writing.to_owned(),
            known,
        })
    }
}

/// Which of `mine` (fingerprints, in order of preference) this instance writes with, beside the
/// `live` others; why it cannot run beside them otherwise.
fn decide(mine: &[String], live: &[Entry]) -> Result<usize, String> {
    if let Some(other) = live.iter().find(|e| !mine.contains(&e.writing)) {
        return Err(format!(
            "another instance writes with deployment secret {}, which this instance does not \
             know (it knows {}); its sessions' tags and page tokens would be invisible here",
            other.writing,
            mine.join(", ")
        ));
    }
    mine.iter()
        .position(|fp| live.iter().all(|e| e.known.contains(fp)))
        .ok_or_else(|| {
            format!(
                "no deployment secret of this instance ({}) is known to every other instance: \
                 list the secret the others write with as well",
                mine.join(", ")
            )
        })
}

impl SessionStore {
    /// The deployment's secrets as agreed with the other instances (checked once here if the
    /// background check has not run yet); refused while they disagree.
    pub async fn keys(&self) -> Result<Arc<Keys>, Error> {
        if let Some(current) = self.secrets.current() {
            return current;
        }
        let _first = self.secrets.first.lock().await;
        if let Some(current) = self.secrets.current() {
            return current;
        }
        self.check_secrets().await?;
        // Kept in Valkey, the secret is made when first needed, and checked from then on.
        self.spawn_secret_agreement();
        self.secrets
            .current()
            .unwrap_or_else(|| Err(Error::Internal("the secret check chose nothing".into())))
    }

    /// `false` only while this instance knows it disagrees with the others about the secret.
    pub fn secrets_agree(&self) -> bool {
        self.secrets
            .state
            .read()
            .expect("keyring lock")
            .disagreement
            .is_none()
    }

    /// Checks the agreement every `secret.agreement_interval`, for as long as the process runs
    /// (once started: at start-up for configured secrets, by the first use of one kept in
    /// Valkey, so an instance that never needs it writes nothing).
    pub fn spawn_secret_agreement(&self) {
        if self
            .secrets
            .running
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(store.secrets.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = store.check_secrets().await {
                    tracing::debug!(error = %e, "deployment secret check failed; trying again");
                }
            }
        });
    }

    /// One check: what this instance knows, what the live others registered, the choice.
    pub async fn check_secrets(&self) -> Result<(), Error> {
        let ring = &self.secrets;
        let known = if ring.configured.is_empty() {
            let (mine, disagreeing) = {
                let state = ring.state.read().expect("keyring lock");
                (state.stored.clone(), state.disagreement.is_some())
            };
            let held = match mine {
                // The first time: make it, or read the one another instance made.
                None => self.stored_secret(None).await?,
                // Refused here: follow what Valkey holds (an operator who deletes a wrong key
                // lets the agreeing instances put theirs back), never put this one back.
                Some(mine) if disagreeing => self.stored_secret_if_any().await?.unwrap_or(mine),
                // Put back when lost; a different one made meanwhile is followed, and the
                // instances then disagree until one of them gives way (loudly).
                Some(mine) => {
                    if self.stored_secret_exists().await? {
                        mine
                    } else {
                        self.stored_secret(Some(&mine)).await?
                    }
                }
            };
            ring.state.write().expect("keyring lock").stored = Some(held.clone());
            vec![held]
        } else {
            let mut known = ring.configured.clone();
            // A deployment moving from the secret kept in Valkey to a configured one keeps
            // reading (and, while an instance without the new one runs, writing) the old tags.
            if let Some(stored) = self.stored_secret_if_any().await? {
                if !known.contains(&stored) {
                    known.push(stored);
                }
            }
            known
        };
        let fingerprints: Vec<String> = known.iter().map(Secret::fingerprint).collect();

        let key = &ring.fleet_key;
        let registered: HashMap<String, i64> = self
            .keyed("hgetall", key, |c| async move { c.hgetall(key).await })
            .await?;
        let now = now_ms() as i64;
        let alive_after = now - ring.stale().as_millis() as i64;
        let own = ring.state.read().expect("keyring lock").field.clone();
        let live: Vec<Entry> = registered
            .iter()
            .filter(|(field, seen)| **seen >= alive_after && Some(*field) != own.as_ref())
            .filter_map(|(field, _)| Entry::parse(field))
            .collect();
        let writing = match decide(&fingerprints, &live) {
            Ok(writing) => writing,
            Err(why) => {
                self.disagree(why);
                return Ok(());
            }
        };
        let field = Entry {
            writing: fingerprints[writing].clone(),
            known: fingerprints.clone(),
        }
        .field();
        let stale: Vec<String> = registered
            .iter()
            .filter(|(f, seen)| **seen < alive_after && **f != field)
            .map(|(f, _)| f.clone())
            .collect();
        let (f, keep) = (&field, ring.stale().as_millis() as i64 * 10);
        self.keyed("hset", key, |c| async move {
            c.hset::<(), _, _>(key, (f.as_str(), now)).await?;
            c.pexpire::<(), _>(key, keep, None).await
        })
        .await?;
        if !stale.is_empty() {
            let stale = &stale;
            self.keyed("hdel", key, |c| async move {
                c.hdel::<(), _, _>(key, stale.clone()).await
            })
            .await?;
        }

        let keys = Arc::new(Keys::new(&known, writing));
        let mut state = ring.state.write().expect("keyring lock");
        let changed = state
            .keys
            .as_ref()
            .is_none_or(|k| k.writing() != keys.writing());
        if state.disagreement.take().is_some() {
            tracing::info!("deployment secrets agree with the other instances again");
        }
        if changed {
            tracing::info!(
                writing = %fingerprints[writing],
                known = %fingerprints.join(","),
                "deployment secret chosen"
            );
        }
        state.keys = Some(keys);
        state.field = Some(field);
        metrics::gauge!("session_secret_agreement").set(1.0);
        Ok(())
    }

    fn disagree(&self, why: String) {
        let mut state = self.secrets.state.write().expect("keyring lock");
        if state.disagreement.as_ref() != Some(&why) {
            tracing::error!(
                reason = %why,
                "deployment secrets disagree with the other instances: sessions of principals \
                 are refused here until they agree"
            );
        }
        state.disagreement = Some(why);
        metrics::gauge!("session_secret_agreement").set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(writing: &str, known: &[&str]) -> Entry {
        Entry {
            writing: writing.into(),
            known: known.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn fps(all: &[&str]) -> Vec<String> {
        all.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_round_trip_and_garbage_is_ignored() {
        let e = entry("b", &["b", "a"]);
        assert_eq!(e.field(), "b|a,b");
        assert_eq!(Entry::parse(&e.field()), Some(entry("b", &["a", "b"])));
        for garbage in ["", "|", "a|", "a|b", "nobar"] {
            assert_eq!(Entry::parse(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn alone_the_first_secret_writes() {
        assert_eq!(decide(&fps(&["b", "a"]), &[]), Ok(0));
    }

    #[test]
    fn a_rotation_in_one_step_writes_the_old_secret_until_the_old_instances_are_gone() {
        // New instances list [new, old]; old ones still run with [old].
        let old_fleet = [entry("a", &["a"])];
        assert_eq!(decide(&fps(&["b", "a"]), &old_fleet), Ok(1));
        // The old instances see the new ones writing the old secret: fine for them too.
        assert_eq!(decide(&fps(&["a"]), &[entry("a", &["a", "b"])]), Ok(0));
        // Old instances gone: the new secret writes.
        assert_eq!(decide(&fps(&["b", "a"]), &[entry("a", &["a", "b"])]), Ok(0));
        // And the old instances could not come back while the new secret writes.
        assert!(decide(&fps(&["a"]), &[entry("b", &["a", "b"])]).is_err());
    }

    #[test]
    fn instances_that_share_no_secret_disagree() {
        let why = decide(&fps(&["c"]), &[entry("a", &["a"])]).unwrap_err();
        assert!(why.contains("does not know"), "{why}");
        // Knowing what the other writes is not enough when it knows nothing of ours.
        let why = decide(&fps(&["c", "a"]), &[entry("a", &["a"])]);
        assert_eq!(why, Ok(1), "ours is unknown there, theirs writes");
        let why = decide(&fps(&["c", "a"]), &[entry("a", &["a"]), entry("c", &["c"])]);
        assert!(why.is_err(), "{why:?}");
    }
}
