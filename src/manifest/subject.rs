//! NATS subject filters (`*` one token, `>` the rest), as trigger subjects use them, and
//! the tenant a subject names (`{prefix}.{tenant}.…`, docs/contracts.md §1).

use std::fmt;

use crate::envelope::clip;
use crate::types::{IdError, TenantId};

/// The tenant token of `subject`: the token right after `prefix` (`{prefix}.{tenant}.…`);
/// `None` when the subject does not start with the prefix or has nothing after it.
pub fn tenant_token<'a>(subject: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    rest.split('.').next().filter(|t| !t.is_empty())
}

/// Why a message proves no tenant (a tenant violation, quarantined as such).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantProofError {
    /// The subject is clipped: it is the message's, so it may be hostile and long.
    #[error("subject {subject:?} names no tenant (expected {prefix}.{{tenant}}.…)")]
    NoTenant { subject: String, prefix: String },
    #[error("the subject's tenant token: {0}")]
    Token(#[source] IdError),
    /// `what` is "header tenant" or "body tenant".
    #[error("{what}: {source}")]
    Claim {
        what: &'static str,
        #[source]
        source: IdError,
    },
    /// A subject under no prefix whose tenant token the Runner knows where to find.
    #[error("subject {0:?} is not one whose tenant the Runner knows how to read")]
    UnknownSubject(String),
    #[error("{what} {claim:?} disagrees with the subject's tenant {tenant:?}")]
    Disagrees {
        what: &'static str,
        claim: String,
        tenant: String,
    },
}

/// The tenant a message belongs to: the one its subject names. NATS permissions restrict
/// subjects, not bodies, so the subject is the authority; the `x-tenant-id` header and
/// the body's `tenant_id` may each be absent (or "") or agree with it, nothing else. The
/// error says why the message proves no tenant (a tenant violation).
pub fn proven_tenant(
    subject: &str,
    prefix: &str,
    header: Option<&str>,
    body: Option<&str>,
) -> Result<TenantId, TenantProofError> {
    let token = tenant_token(subject, prefix).ok_or_else(|| TenantProofError::NoTenant {
        subject: clip(subject),
        prefix: prefix.to_string(),
    })?;
    let tenant = TenantId::new(token).map_err(TenantProofError::Token)?;
    for (what, claim) in [("header tenant", header), ("body tenant", body)] {
        let Some(claim) = claim.filter(|c| !c.is_empty()) else {
            continue;
        };
        let claimed =
            TenantId::new(claim).map_err(|source| TenantProofError::Claim { what, source })?;
        if claimed != tenant {
            return Err(TenantProofError::Disagrees {
                what,
                claim: clip(claim),
                tenant: tenant.token().to_string(),
            });
        }
    }
    Ok(tenant)
}

/// Why a trigger's subject filter is not one NATS would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectFilterError {
    #[error("subject filter must not be empty")]
    Empty,
    #[error("subject filter {0:?} contains whitespace")]
    Whitespace(String),
    #[error("subject filter {0:?} has an empty token")]
    EmptyToken(String),
    #[error("subject filter {0:?}: '>' must be the last token")]
    TailNotLast(String),
    #[error("subject filter {0:?}: wildcards must be whole tokens")]
    PartialWildcard(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectFilter {
    raw: String,
    tokens: Vec<String>,
}

impl SubjectFilter {
    pub fn parse(raw: &str) -> Result<SubjectFilter, SubjectFilterError> {
        if raw.is_empty() {
            return Err(SubjectFilterError::Empty);
        }
        if raw.contains(char::is_whitespace) {
            return Err(SubjectFilterError::Whitespace(raw.to_string()));
        }
        let tokens: Vec<String> = raw.split('.').map(str::to_string).collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(SubjectFilterError::EmptyToken(raw.to_string()));
            }
            if token == ">" && i + 1 != tokens.len() {
                return Err(SubjectFilterError::TailNotLast(raw.to_string()));
            }
            if token.len() > 1 && token.contains(['*', '>']) {
                return Err(SubjectFilterError::PartialWildcard(raw.to_string()));
            }
        }
        Ok(SubjectFilter {
            raw: raw.to_string(),
            tokens,
        })
    }

    /// Whether a subject this filter matches may begin with `prefix`'s tokens (a `*` in
    /// the filter stands for any one token, a `>` for the rest).
    pub fn may_lie_under(&self, prefix: &str) -> bool {
        let mut tokens = self.tokens.iter();
        for want in prefix.split('.') {
            match tokens.next().map(String::as_str) {
                Some(">") => return true,
                Some(t) if t == "*" || t == want => {}
                _ => return false,
            }
        }
        true
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn matches(&self, subject: &str) -> bool {
        let mut parts = subject.split('.');
        for token in &self.tokens {
            match (token.as_str(), parts.next()) {
                (">", Some(_)) => return true,
                (_, None) => return false,
                ("*", Some(_)) => {}
                (literal, Some(part)) if literal == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl fmt::Display for SubjectFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_nats() {
        let f = SubjectFilter::parse("aggregate.*.order.OrderPlaced").unwrap();
        assert!(f.matches("aggregate.acme.order.OrderPlaced"));
        assert!(!f.matches("aggregate.acme.order.OrderShipped"));
        assert!(!f.matches("aggregate.acme.order.OrderPlaced.extra"));
        assert!(!f.matches("aggregate.acme.order"));
        let all = SubjectFilter::parse("workflow.>").unwrap();
        assert!(all.matches("workflow.result.acme.charge_card"));
        assert!(!all.matches("workflow"));
        assert!(SubjectFilter::parse("a.>.b").is_err());
        assert!(SubjectFilter::parse("a..b").is_err());
        assert!(SubjectFilter::parse("a.b*").is_err());
        assert!(SubjectFilter::parse("").is_err());
    }

    #[test]
    fn the_subject_names_the_tenant_and_header_and_body_may_only_agree() {
        let p = "workflow.result";
        assert_eq!(tenant_token("workflow.result.acme.charge", p), Some("acme"));
        assert_eq!(tenant_token("workflow.result._.charge", p), Some("_"));
        assert_eq!(tenant_token("workflow.resultx.acme.charge", p), None);
        assert_eq!(tenant_token("workflow.result", p), None);
        assert_eq!(tenant_token("workflow.result.", p), None);
        let s = "workflow.result.acme.charge";
        let ok = |h, b| proven_tenant(s, p, h, b).map(|t| t.to_string());
        assert_eq!(ok(None, None).ok().as_deref(), Some("acme"));
        assert_eq!(ok(Some("acme"), Some("")).ok().as_deref(), Some("acme"));
        assert!(ok(Some("globex"), None)
            .unwrap_err()
            .to_string()
            .contains("header tenant"));
        assert!(ok(None, Some("globex"))
            .unwrap_err()
            .to_string()
            .contains("body tenant"));
        assert!(
            ok(None, Some("_")).is_err(),
            "the single tenant is another tenant"
        );
        assert!(ok(None, Some("a b"))
            .unwrap_err()
            .to_string()
            .contains("invalid tenant id"));
        let single = proven_tenant("workflow.result._.charge", p, Some(""), Some("_"));
        assert!(single.unwrap().is_single());
        assert!(proven_tenant("elsewhere.acme", p, None, None).is_err());
        assert!(proven_tenant("workflow.result.a*b.x", p, None, None).is_err());
    }

    #[test]
    fn a_filter_may_lie_under_a_prefix_token_by_token() {
        let f = |raw: &str| SubjectFilter::parse(raw).unwrap();
        assert!(f("aggregate.*.order.OrderPlaced").may_lie_under("aggregate"));
        assert!(f("ns.aggregate.>").may_lie_under("ns.aggregate"));
        assert!(f("*.aggregate.acme.>").may_lie_under("ns.aggregate"));
        assert!(f(">").may_lie_under("aggregate"));
        assert!(!f("events.*.order.OrderPlaced").may_lie_under("aggregate"));
        assert!(!f("ns.aggregate.>").may_lie_under("aggregate"));
        assert!(!f("aggregate").may_lie_under("ns.aggregate"));
    }
}
