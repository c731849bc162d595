//! Service filters: the keys DESIGN.md gives for finding services.

use serde::{Deserialize, Serialize};

use crate::service::Service;

/// Every key is optional; a service matches when it matches every key given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// A full template UID, or any suffix of it (`node`, `node/1.2.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_version: Option<String>,
}

impl ServiceFilter {
    pub fn by_name(name: &str) -> ServiceFilter {
        ServiceFilter {
            name: Some(name.to_owned()),
            ..Default::default()
        }
    }

    pub fn matches(&self, svc: &Service) -> bool {
        if self.name.as_ref().is_some_and(|n| n != &svc.name) {
            return false;
        }
        if self
            .guid
            .as_ref()
            .is_some_and(|g| !g.eq_ignore_ascii_case(&svc.guid.to_string()))
        {
            return false;
        }
        let t = svc.template();
        let uid = &t.uid;
        if let Some(r) = &self.template_uid {
            let segments: Vec<&str> = r.trim_matches('/').split('/').collect();
            if !uid.matches(&segments) {
                return false;
            }
        }
        let eq = |want: &Option<String>, have: &str| {
            want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        eq(&self.template_host, &uid.repo.host)
            && eq(&self.template_account, &uid.repo.account)
            && eq(&self.template_repo, &uid.repo.repo)
            && eq(&self.template_name, &uid.name)
            && eq(&self.template_version, &uid.version.to_string())
    }
}
