//! Property tests of template repository URLs: any text parses to a URL or a
//! clear error, never a panic; a repository id never has an empty segment;
//! and a password or token in a URL never shows, neither in the URL as
//! displayed nor in an error about it. Case counts are bounded.

use proptest::prelude::*;
use zrobot_git::TemplateRepoUrl;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 500,
        max_shrink_iters: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A secret no other part of a generated URL can contain: upper-case
/// letters and digits after a marker, while hosts and paths are lower-case.
fn secret() -> impl Strategy<Value = String> {
    "[A-Z0-9]{6,16}".prop_map(|s| format!("Q{s}"))
}

fn word() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,8}"
}

fn scheme() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("https"), Just("http"), Just("ssh"), Just("git")]
}

proptest! {
    #![proptest_config(config())]

    /// Any text: a URL whose remote id names a host, an account and a
    /// repository, or an error; never a panic.
    #[test]
    fn any_text_is_a_url_or_an_error(text in "\\PC{0,60}|(https?|ssh|git|file)://[ -~]{0,40}(#[ -~]{0,8})?") {
        if let Ok(url) = TemplateRepoUrl::parse(&text) {
            if url.is_remote() {
                let id = url.repo_id();
                prop_assert!(!id.host.is_empty(), "{text:?} -> {id}");
                prop_assert!(!id.account.is_empty(), "{text:?} -> {id}");
                prop_assert!(!id.repo.is_empty(), "{text:?} -> {id}");
            }
        }
    }

    /// Remote URLs made of valid parts keep those parts as their id.
    #[test]
    fn remote_urls_give_their_parts_as_id(
        scheme in scheme(), host in word(), account in word(), repo in word(), dot_git in any::<bool>(),
    ) {
        prop_assume!(!repo.trim_end_matches(".git").is_empty());
        let suffix = if dot_git { ".git" } else { "" };
        let text = format!("{scheme}://{host}/{account}/{repo}{suffix}");
        let url = TemplateRepoUrl::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let id = url.repo_id();
        prop_assert_eq!(id.host, host.to_ascii_lowercase());
        prop_assert_eq!(id.account, account);
        prop_assert_eq!(id.repo, repo.trim_end_matches(".git"));
    }

    /// A password or a token in a URL never shows when the URL is displayed
    /// or when it is refused, however the rest of the URL looks.
    #[test]
    fn secrets_in_urls_never_show(
        scheme in scheme(),
        user in prop::option::of(word()),
        secret in secret(),
        host in word(),
        path in "(/[a-z0-9._-]{0,6}){0,4}",
        fragment in prop::option::of("[a-z0-9/#-]{0,6}"),
    ) {
        // Over ssh a lone user name is an account (`git@`), not a secret.
        prop_assume!(user.is_some() || scheme != "ssh");
        let userinfo = match &user {
            Some(u) => format!("{u}:{secret}@"),
            None => format!("{secret}@"),
        };
        let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
        let text = format!("{scheme}://{userinfo}{host}{path}{fragment}");
        match TemplateRepoUrl::parse(&text) {
            Ok(url) => {
                let shown = url.to_string();
                prop_assert!(!shown.contains(&secret), "{text} is shown as {shown}");
                let id = url.repo_id().to_string();
                prop_assert!(!id.contains(&secret), "{text} has the id {id}");
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.contains(&secret), "{text} is refused with: {message}");
            }
        }
    }
}
