//! The loaded templates, and how a reference picks one of them.

use std::sync::{Arc, RwLock};

use super::{Template, TemplateUid};
use crate::error::CoreError;

/// Every loaded template version. Reads vastly outnumber writes (writes
/// happen only when repositories are loaded), hence the `RwLock`.
#[derive(Default)]
pub struct TemplateRegistry {
    templates: RwLock<Vec<Arc<Template>>>,
}

impl TemplateRegistry {
    pub fn new() -> TemplateRegistry {
        TemplateRegistry::default()
    }

    /// Adds a template, replacing one with the same UID.
    pub fn add(&self, template: Arc<Template>) {
        let mut all = self.templates.write().unwrap_or_else(|e| e.into_inner());
        all.retain(|t| t.uid != template.uid);
        all.push(template);
        all.sort_by(|a, b| {
            (&a.uid.repo, &a.uid.name, &a.uid.version).cmp(&(
                &b.uid.repo,
                &b.uid.name,
                &b.uid.version,
            ))
        });
    }

    /// Every loaded template, sorted by UID (versions as semver).
    pub fn list(&self) -> Vec<Arc<Template>> {
        self.templates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The template with exactly this UID.
    pub fn get(&self, uid: &TemplateUid) -> Option<Arc<Template>> {
        self.templates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|t| &t.uid == uid)
            .cloned()
    }

    /// Resolves a reference: any unambiguous suffix of a UID. When it matches
    /// several versions of one template, the highest (as semver) wins; when it
    /// matches several templates, the error lists them.
    pub fn resolve(&self, reference: &str) -> Result<Arc<Template>, CoreError> {
        let reference = reference.trim().trim_matches('/');
        let segments: Vec<&str> = reference.split('/').collect();
        if reference.is_empty() || segments.iter().any(|s| s.is_empty()) {
            return Err(CoreError::TemplateNotFound(reference.to_owned()));
        }
        let all = self.templates.read().unwrap_or_else(|e| e.into_inner());
        let matches: Vec<&Arc<Template>> =
            all.iter().filter(|t| t.uid.matches(&segments)).collect();
        let Some(first) = matches.first() else {
            return Err(CoreError::TemplateNotFound(reference.to_owned()));
        };
        let same_template = matches
            .iter()
            .all(|t| t.uid.repo == first.uid.repo && t.uid.name == first.uid.name);
        if !same_template {
            let mut candidates: Vec<String> = matches.iter().map(|t| t.uid.to_string()).collect();
            candidates.dedup();
            return Err(CoreError::AmbiguousTemplate {
                reference: reference.to_owned(),
                candidates,
            });
        }
        Ok(matches
            .iter()
            .max_by(|a, b| a.uid.version.cmp(&b.uid.version))
            .map(|t| Arc::clone(t))
            .expect("matches is not empty"))
    }

    /// The newest loaded version of the template `uid` is a version of.
    pub fn newest_version_of(&self, uid: &TemplateUid) -> Option<Arc<Template>> {
        self.templates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|t| t.uid.repo == uid.repo && t.uid.name == uid.name)
            .max_by(|a, b| a.uid.version.cmp(&b.uid.version))
            .cloned()
    }
}
