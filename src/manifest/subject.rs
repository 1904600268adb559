//! NATS subject filters (`*` one token, `>` the rest), as trigger subjects use them.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectFilter {
    raw: String,
    tokens: Vec<String>,
}

impl SubjectFilter {
    pub fn parse(raw: &str) -> Result<SubjectFilter, String> {
        if raw.is_empty() {
            return Err("subject filter must not be empty".into());
        }
        if raw.contains(char::is_whitespace) {
            return Err(format!("subject filter {raw:?} contains whitespace"));
        }
        let tokens: Vec<String> = raw.split('.').map(str::to_string).collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() {
                return Err(format!("subject filter {raw:?} has an empty token"));
            }
            if token == ">" && i + 1 != tokens.len() {
                return Err(format!(
                    "subject filter {raw:?}: '>' must be the last token"
                ));
            }
            if token.len() > 1 && token.contains(['*', '>']) {
                return Err(format!(
                    "subject filter {raw:?}: wildcards must be whole tokens"
                ));
            }
        }
        Ok(SubjectFilter {
            raw: raw.to_string(),
            tokens,
        })
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
}
