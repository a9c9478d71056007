//! Loading the policy named in the config (or the bundled one) and the masking key, and
//! reloading the policy when its file changes or on SIGHUP: compiled off the request path,
//! swapped whole; an invalid file is refused with every error, and the old policy stays.

use crate::Gateway;
use airlock_config::Config;
use airlock_detect::MaskKey;
use airlock_policy::Policy;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The policy the config names, or the bundled example policy. The error lists every
/// problem with its line.
pub fn load(config: &Config) -> Result<Policy, String> {
    match &config.policy {
        None => Ok(Policy::bundled()),
        Some(path) => parse_file(path),
    }
}

pub fn masking_key_file(config: &Config) -> PathBuf {
    config
        .masking_key_file
        .clone()
        .unwrap_or_else(|| crate::audit::data_dir(&config.store).join("masking.key"))
}

/// Read the masking key, creating it (32 random bytes, mode 0600) on first start.
pub fn load_mask_key(config: &Config) -> Result<MaskKey, String> {
    let path = masking_key_file(config);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => Ok(MaskKey::new(&bytes)),
        Ok(_) => Err(format!("the masking key {} is shorter than 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                .map_err(|_| "no randomness for the masking key".to_owned())?;
            match airlock_authn::write_private(&path, &key) {
                Ok(()) => Ok(MaskKey::new(&key)),
                // Another instance created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_mask_key(config),
                Err(e) => Err(format!("cannot create the masking key {}: {e}", path.display())),
            }
        }
        Err(e) => Err(format!("cannot read the masking key {}: {e}", path.display())),
    }
}

/// What is loaded, and how the last reload went.
#[derive(Debug, Clone)]
pub struct Status {
    pub version: String,
    pub source: String,
    pub loaded_at: SystemTime,
    pub last_error: Option<String>,
    pub failed_at: Option<SystemTime>,
    pub reload_failures: u64,
}

impl Status {
    pub(crate) fn loaded(p: &Policy) -> Status {
        Status {
            version: p.version.clone(),
            source: p.source.clone(),
            loaded_at: SystemTime::now(),
            last_error: None,
            failed_at: None,
            reload_failures: 0,
        }
    }
}

/// How often the policy file is looked at.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Read and compile a policy file; the files it imports are read relative to its
/// directory. Skipped imported rules are logged.
pub fn parse_file(path: &Path) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the policy file {}: {e}", path.display()))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let policy = Policy::parse_with_files(&path.display().to_string(), &text, &read)
        .map_err(|e| e.to_string())?;
    for w in &policy.warnings {
        tracing::warn!(target: "airlock::policy", warning = %w, "policy");
    }
    Ok(policy)
}

/// Reload the policy file now (SIGHUP). Compiles on a blocking thread; on success the new
/// version serves every request that starts after the swap.
pub async fn reload(gw: &Gateway) -> Result<String, String> {
    let Some(path) = gw.policy_file.clone() else {
        return Err("no policy file is configured (the bundled policy is in use)".into());
    };
    let result = tokio::task::spawn_blocking(move || parse_file(&path))
        .await
        .unwrap_or_else(|e| Err(format!("policy compilation failed: {e}")));
    match result {
        Ok(policy) => {
            let version = policy.version.clone();
            if version != gw.policy.current().version {
                tracing::info!(target: "airlock::policy", version = %version, "policy reloaded");
            }
            gw.policy.replace(policy);
            Ok(version)
        }
        Err(e) => {
            tracing::error!(target: "airlock::policy", error = %e, "policy reload refused; the previous policy stays");
            gw.policy.reload_failed(e.clone());
            Err(e)
        }
    }
}

/// Follow the policy file: when its bytes change and then stay the same for one more look
/// (so a file caught half-written is never loaded), reload. A file that fails to compile is
/// reported once per change, not once per look.
pub async fn follow_file(
    gw: Arc<Gateway>,
    path: PathBuf,
    stop: impl std::future::Future<Output = ()>,
) {
    let fingerprint = |p: &Path| {
        std::fs::read(p)
            .ok()
            .map(|b| ring::digest::digest(&ring::digest::SHA256, &b).as_ref().to_vec())
    };
    let mut loaded = fingerprint(&path);
    let mut seen = loaded.clone();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        let now = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || fingerprint(&p)).await.ok().flatten()
        };
        let settled = now == seen;
        seen = now.clone();
        if now.is_some() && now != loaded && settled {
            loaded = now;
            let _ = reload(&gw).await;
        }
    }
}
