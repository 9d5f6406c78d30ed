//! Authorization phase (DESIGN §2 step 7, §5). Secured services need a verified token; until
//! verification keys exist (the JWT capability) there are no usable keys, and a secured
//! service then answers 401 — fail closed, never open.

use crate::data::reject::Reject;
use crate::snapshot::Service;

/// `Ok` when the request may reach the service.
pub fn authorize(service: &Service) -> Result<(), Reject> {
    if !service.secured {
        return Ok(());
    }
    // No key source is configured in this build: "no usable keys" → 401 (§5).
    Err(Reject::Unauthenticated("no_keys"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(secured: bool) -> Service {
        Service {
            name: "s".into(),
            group: "g".into(),
            label: "s/g".into(),
            route_key: "/s/g".into(),
            route: "/capi/s/g".into(),
            kind: "websocket".into(),
            secured,
            subscription_groups: vec![],
            root_context: String::new(),
            keep_group: false,
            allowed_origins: None,
            routable: true,
            reason: None,
            conflicts: vec![],
            nodes: vec![],
        }
    }

    #[test]
    fn open_service_passes_secured_fails_closed() {
        assert_eq!(authorize(&svc(false)), Ok(()));
        assert_eq!(authorize(&svc(true)), Err(Reject::Unauthenticated("no_keys")));
    }
}
