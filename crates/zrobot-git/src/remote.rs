//! Talking to remotes: credentials, bounded network waits, fetch and push.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Once;

use git2::{
    AutotagOption, Cred, CredentialType, FetchOptions, FetchPrune, PushOptions, RemoteCallbacks,
    Repository,
};

/// How long git waits to connect, and then for each read or write: an
/// unreachable remote fails a clone or a push in bounded time instead of
/// holding a blocking thread for the system's TCP timeouts.
const CONNECT_TIMEOUT_MS: i32 = 30_000;
const IO_TIMEOUT_MS: i32 = 120_000;

/// Sets libgit2's process-wide options once.
pub(crate) fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: these only set two integers in libgit2's global settings,
        // once, before this crate runs any git operation.
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(CONNECT_TIMEOUT_MS);
            let _ = git2::opts::set_server_timeout_in_milliseconds(IO_TIMEOUT_MS);
        }
    });
}

/// Key files tried, in order, after ssh-agent.
const SSH_KEYS: [&str; 3] = ["id_ed25519", "id_ecdsa", "id_rsa"];

/// What the credentials callback has offered already: libgit2 calls it again
/// after every refusal, so each source is tried once and then it gives up.
#[derive(Default)]
struct Offered {
    agent: bool,
    keys: usize,
    helper: bool,
}

/// Callbacks that answer credential requests: credentials in the URL are
/// applied by libgit2 itself; then ssh-agent and ~/.ssh keys for ssh, and the
/// user's git credential helper for https.
pub(crate) fn callbacks<'a>() -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    let offered = RefCell::new(Offered::default());
    callbacks.credentials(move |url, username, allowed| {
        let mut offered = offered.borrow_mut();
        let user = username.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user);
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if !offered.agent {
                offered.agent = true;
                if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                    return Cred::ssh_key_from_agent(user);
                }
            }
            let ssh_dir = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".ssh"));
            while offered.keys < SSH_KEYS.len() {
                let name = SSH_KEYS[offered.keys];
                offered.keys += 1;
                if let Some(key) = ssh_dir.as_ref().map(|d| d.join(name)) {
                    if key.is_file() {
                        return Cred::ssh_key(user, None, &key, None);
                    }
                }
            }
            return Err(git2::Error::new(
                git2::ErrorCode::Auth,
                git2::ErrorClass::Ssh,
                "no ssh key was accepted (tried ssh-agent and ~/.ssh/id_ed25519, id_ecdsa, id_rsa)",
            ));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) && !offered.helper {
            offered.helper = true;
            if let Some(cred) = helper_credentials(url, username) {
                return Ok(cred);
            }
        }
        Err(git2::Error::new(
            git2::ErrorCode::Auth,
            git2::ErrorClass::Http,
            "the server asks for credentials and none were accepted",
        ))
    });
    callbacks
}

#[cfg(any(feature = "https", feature = "ssh"))]
fn helper_credentials(url: &str, username: Option<&str>) -> Option<Cred> {
    let config = git2::Config::open_default().ok()?;
    Cred::credential_helper(&config, url, username).ok()
}

#[cfg(not(any(feature = "https", feature = "ssh")))]
fn helper_credentials(_url: &str, _username: Option<&str>) -> Option<Cred> {
    None
}

/// Fetches every branch (as `origin/*`) and tag of `origin`, pruning those
/// gone, and records the remote's default branch as `origin/HEAD`. Returns
/// the default branch's name (`refs/heads/...`) when the remote told it.
pub(crate) fn fetch_all(repo: &Repository) -> Result<Option<String>, git2::Error> {
    setup();
    let mut remote = repo.find_remote("origin")?;
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks())
        .download_tags(AutotagOption::All)
        .prune(FetchPrune::On);
    remote.fetch(
        &[
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ],
        Some(&mut options),
        None,
    )?;
    let default = remote
        .default_branch()
        .ok()
        .and_then(|b| b.as_str().ok().map(str::to_owned));
    if let Some(branch) = default
        .as_deref()
        .and_then(|b| b.strip_prefix("refs/heads/"))
    {
        let target = format!("refs/remotes/origin/{branch}");
        if repo.find_reference(&target).is_ok() {
            repo.reference_symbolic("refs/remotes/origin/HEAD", &target, true, "remote HEAD")?;
        }
    }
    Ok(default)
}

/// Fetches one branch of `origin` into `origin/<branch>` (absent remotely: nothing happens).
pub(crate) fn fetch_branch(repo: &Repository, branch: &str) -> Result<(), git2::Error> {
    setup();
    let mut remote = repo.find_remote("origin")?;
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks())
        .download_tags(AutotagOption::None);
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    remote.fetch(&[refspec.as_str()], Some(&mut options), None)
}

/// Pushes `refs/heads/<branch>` to `origin`. A refusal of the remote (not a
/// fast-forward, a protected branch) is an error carrying its reason.
pub(crate) fn push_branch(repo: &Repository, branch: &str) -> Result<(), git2::Error> {
    setup();
    let mut remote = repo.find_remote("origin")?;
    let refused: RefCell<Option<String>> = RefCell::new(None);
    {
        let mut callbacks = callbacks();
        callbacks.push_update_reference(|name, status| {
            if let Some(reason) = status {
                *refused.borrow_mut() = Some(format!("the remote refused {name}: {reason}"));
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
        remote.push(&[refspec.as_str()], Some(&mut options))?;
    }
    match refused.into_inner() {
        Some(reason) => Err(git2::Error::from_str(&reason)),
        None => Ok(()),
    }
}
