//! The route table, resolved once at start from the configured routes
//! (see `access` for the classes and the built-in table): for each routable
//! method, which upstream cluster serves it, its [`Access`] class and the
//! shape of its messages.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use boxoffice_runtime::limits::max_request_bytes;
use prost::Message as _;

pub use crate::access::Access;
use crate::access::RouteConfig;

/// One routable method, resolved once at start.
#[derive(Debug)]
pub struct MethodRoute {
    /// `/package.Service/Method`.
    pub path: String,
    pub service: String,
    pub method: String,
    pub cluster: usize,
    pub access: Access,
    /// An admin call that changes something: recorded in the audit log
    /// before it is forwarded (see `audit`).
    pub audited: bool,
    /// Unary requests are buffered (bounded by the message limit) so they
    /// can be size-checked and retried on another instance.
    pub client_streaming: bool,
    /// Server streams get no default deadline.
    pub server_streaming: bool,
    /// The largest request message the service decodes
    /// ([`boxoffice_runtime::limits`]): the edge refuses larger ones itself.
    pub max_request_bytes: usize,
    /// Index into the per-method metrics.
    pub index: usize,
}

/// Compiled routes: exact paths for every method known from the contracts,
/// plus service-level fallbacks for services the edge has no descriptor for.
#[derive(Debug)]
pub struct RouteTable {
    by_path: HashMap<String, Arc<MethodRoute>>,
    by_service: HashMap<String, Arc<MethodRoute>>,
    methods: Vec<Arc<MethodRoute>>,
}

/// What the contracts say about a method's shape.
#[derive(Clone, Copy, Debug, Default)]
struct Shape {
    client_streaming: bool,
    server_streaming: bool,
}

fn method_shapes(descriptor_sets: &[&[u8]]) -> BTreeMap<String, BTreeMap<String, Shape>> {
    let mut services = BTreeMap::new();
    for encoded in descriptor_sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(*encoded) else {
            tracing::warn!("a descriptor set does not decode; its services route without shapes");
            continue;
        };
        for file in set.file {
            let package = file.package.clone().unwrap_or_default();
            for service in &file.service {
                let name = match package.as_str() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                let methods: &mut BTreeMap<String, Shape> = services.entry(name).or_default();
                for method in &service.method {
                    methods.insert(
                        method.name().to_owned(),
                        Shape {
                            client_streaming: method.client_streaming(),
                            server_streaming: method.server_streaming(),
                        },
                    );
                }
            }
        }
    }
    services
}

/// Whether a method changes something, by the API's naming rule (AIP):
/// reads are `Get…`, `List…`, `Watch…` or `Search…`; anything else is
/// taken to change something (and is audited when it is admin-only).
pub fn changes_something(method: &str) -> bool {
    !["Get", "List", "Watch", "Search"]
        .iter()
        .any(|read| method.starts_with(read))
}

impl RouteTable {
    /// `cluster_index` maps cluster names to the indexes the proxy uses.
    pub fn compile(
        routes: &[RouteConfig],
        descriptor_sets: &[&[u8]],
        cluster_index: &HashMap<String, usize>,
    ) -> anyhow::Result<Self> {
        let shapes = method_shapes(descriptor_sets);
        let mut table = Self {
            by_path: HashMap::new(),
            by_service: HashMap::new(),
            methods: Vec::new(),
        };
        for route in routes {
            let cluster = *cluster_index.get(&route.cluster).ok_or_else(|| {
                anyhow::anyhow!(
                    "route {} names unknown cluster {}",
                    route.service,
                    route.cluster
                )
            })?;
            let known = shapes.get(&route.service);
            if let Some(known) = known {
                for name in route.methods.keys() {
                    if !known.contains_key(name) {
                        tracing::warn!(service = %route.service, method = %name, "route lists a method the contracts do not have");
                    }
                }
            }
            let mut names: Vec<(String, Shape)> = known
                .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default();
            // Listed methods not (yet) in the contracts still route, as streams
            // (never buffered, no default deadline): the safe assumption.
            for name in route.methods.keys() {
                if !names.iter().any(|(known, _)| known == name) {
                    names.push((
                        name.clone(),
                        Shape {
                            client_streaming: true,
                            server_streaming: true,
                        },
                    ));
                }
            }
            for (name, shape) in names {
                let name_for_audit = name.clone();
                let access = route
                    .methods
                    .get(&name)
                    .copied()
                    .unwrap_or(route.default_access);
                let method = Arc::new(MethodRoute {
                    path: format!("/{}/{}", route.service, name),
                    service: route.service.clone(),
                    method: name,
                    cluster,
                    access,
                    audited: access == Access::Admin && changes_something(&name_for_audit),
                    client_streaming: shape.client_streaming,
                    server_streaming: shape.server_streaming,
                    max_request_bytes: max_request_bytes(&route.service),
                    index: table.methods.len(),
                });
                table.by_path.insert(method.path.clone(), method.clone());
                table.methods.push(method);
            }
            let fallback = Arc::new(MethodRoute {
                path: format!("/{}/*", route.service),
                service: route.service.clone(),
                method: "*".to_owned(),
                cluster,
                access: route.default_access,
                audited: route.default_access == Access::Admin,
                client_streaming: true,
                server_streaming: true,
                max_request_bytes: max_request_bytes(&route.service),
                index: table.methods.len(),
            });
            table
                .by_service
                .insert(route.service.clone(), fallback.clone());
            table.methods.push(fallback);
        }
        Ok(table)
    }

    /// The route of a request path, if any.
    pub fn lookup(&self, path: &str) -> Option<&Arc<MethodRoute>> {
        if let Some(route) = self.by_path.get(path) {
            return Some(route);
        }
        let service = path.strip_prefix('/')?.split_once('/')?.0;
        self.by_service.get(service)
    }

    pub fn methods(&self) -> &[Arc<MethodRoute>] {
        &self.methods
    }

    /// Services with at least one method outsiders may call.
    pub fn routed_services(&self) -> Vec<(String, usize)> {
        let mut services: Vec<(String, usize)> = self
            .by_service
            .values()
            .map(|route| (route.service.clone(), route.cluster))
            .collect();
        services.sort();
        services
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::default_routes;

    fn table() -> RouteTable {
        let clusters: HashMap<String, usize> = crate::config::CLUSTERS
            .iter()
            .enumerate()
            .map(|(i, name)| ((*name).to_owned(), i))
            .collect();
        RouteTable::compile(
            &default_routes(),
            &[boxoffice_contracts::FILE_DESCRIPTOR_SET],
            &clusters,
        )
        .unwrap()
    }

    #[test]
    fn catalog_reads_are_public_and_writes_admin() {
        let table = table();
        let get = table
            .lookup("/boxoffice.catalog.v1.CatalogService/GetEvent")
            .unwrap();
        assert_eq!(get.access, Access::Public);
        assert!(!get.client_streaming && !get.server_streaming);
        let create = table
            .lookup("/boxoffice.catalog.v1.CatalogService/CreateEvent")
            .unwrap();
        assert_eq!(create.access, Access::Admin);
        // Unknown methods of a routed service take the service's default.
        let unknown = table
            .lookup("/boxoffice.catalog.v1.CatalogService/DropEverything")
            .unwrap();
        assert_eq!(unknown.access, Access::Admin);
    }

    #[test]
    fn service_to_service_methods_are_internal_and_unknown_services_unrouted() {
        let table = table();
        assert_eq!(
            table
                .lookup("/boxoffice.inventory.v1.InventoryService/CommitHold")
                .unwrap()
                .access,
            Access::Internal
        );
        assert_eq!(
            table
                .lookup("/boxoffice.inventory.v1.InventoryService/HoldSeats")
                .unwrap()
                .access,
            Access::User
        );
        assert_eq!(
            table
                .lookup("/boxoffice.accounts.v1.AccountsService/GetMe")
                .unwrap()
                .access,
            Access::User
        );
        for (method, access) in [
            ("StartSocialLogin", Access::Public),
            ("FinishSocialLogin", Access::Public),
            ("LinkSocialLogin", Access::Public),
            ("ListSocialProviders", Access::Public),
            ("ListSocialIdentities", Access::User),
            ("UnlinkSocialIdentity", Access::User),
        ] {
            let path = format!("/boxoffice.accounts.v1.AccountsService/{method}");
            assert_eq!(table.lookup(&path).unwrap().access, access, "{method}");
        }
        assert!(table.lookup("/grpc.health.v1.Health/Check").is_none());
        assert!(table.lookup("/nonsense").is_none());
    }
    #[test]
    fn the_door_is_for_admins_and_transfers_for_users() {
        let table = table();
        for method in [
            "RedeemTicket",
            "GetScannerKit",
            "UploadOfflineScans",
            "ListScanConflicts",
            "GetCheckInCounts",
            "UpdateDoorSettings",
            "SomethingNew",
        ] {
            let route = table
                .lookup(&format!("/boxoffice.checkout.v1.DoorService/{method}"))
                .unwrap();
            assert_eq!(route.access, Access::Admin, "{method}");
        }
        for method in [
            "ListTickets",
            "CreateTicketTransfer",
            "AcceptTicketTransfer",
            "CancelTicketTransfer",
            "ListTicketTransfers",
        ] {
            let route = table
                .lookup(&format!("/boxoffice.checkout.v1.CheckoutService/{method}"))
                .unwrap();
            assert_eq!(route.access, Access::User, "{method}");
        }
        for (method, access) in [
            ("ApplyPromoCode", Access::User),
            ("RemovePromoCode", Access::User),
            ("CreatePromoCode", Access::Admin),
            ("ListPromoCodes", Access::Admin),
            ("ApplyLoyaltyPoints", Access::User),
            ("GetLoyalty", Access::User),
        ] {
            let route = table
                .lookup(&format!("/boxoffice.checkout.v1.CheckoutService/{method}"))
                .unwrap();
            assert_eq!(route.access, access, "{method}");
        }
        let max = table
            .lookup("/boxoffice.checkout.v1.DoorService/UploadOfflineScans")
            .unwrap()
            .max_request_bytes;
        assert_eq!(max, boxoffice_runtime::limits::DOOR_MAX_REQUEST_BYTES);
    }

    #[test]
    fn every_rpc_of_every_contract_has_a_rule_of_its_own() {
        // Deny by default covers a method nobody classified, but a new RPC
        // should be classified on purpose: every method of every boxoffice
        // service is listed in the table, with the class it gets.
        let routes = default_routes();
        let set = prost_types::FileDescriptorSet::decode(boxoffice_contracts::FILE_DESCRIPTOR_SET)
            .unwrap();
        let mut checked = 0;
        for file in &set.file {
            let package = file.package();
            if !package.starts_with("boxoffice.") || package.starts_with("boxoffice.testing.") {
                continue;
            }
            for service in &file.service {
                let name = format!("{package}.{}", service.name());
                let route = routes
                    .iter()
                    .find(|route| route.service == name)
                    .unwrap_or_else(|| panic!("{name} has no route"));
                for method in &service.method {
                    assert!(
                        route.methods.contains_key(method.name()),
                        "{name}/{} has no rule of its own",
                        method.name()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 90, "only {checked} RPCs checked");
    }

    #[test]
    fn webhooks_and_the_audit_list_are_admin_only_and_admin_writes_are_audited() {
        let table = table();
        for method in [
            "CreateWebhookEndpoint",
            "ListWebhookDeliveries",
            "RedeliverWebhook",
            "Unknown",
        ] {
            let route = table
                .lookup(&format!("/boxoffice.webhooks.v1.WebhookService/{method}"))
                .unwrap();
            assert_eq!(route.access, Access::Admin, "{method}");
        }
        let list = table
            .lookup("/boxoffice.audit.v1.AuditService/ListAuditRecords")
            .unwrap();
        assert_eq!(list.access, Access::Admin);
        assert!(!list.audited, "reads are not audited");
        let record = table
            .lookup("/boxoffice.audit.v1.AuditService/RecordAdminActions")
            .unwrap();
        assert_eq!(record.access, Access::Internal);
        for (path, audited) in [
            ("/boxoffice.catalog.v1.CatalogService/CreateEvent", true),
            (
                "/boxoffice.webhooks.v1.WebhookService/RedeliverWebhook",
                true,
            ),
            (
                "/boxoffice.webhooks.v1.WebhookService/GetWebhookEndpoint",
                false,
            ),
            ("/boxoffice.stats.v1.StatsService/WatchEventStats", false),
            (
                "/boxoffice.checkout.v1.CheckoutService/ConfirmBooking",
                false,
            ),
            ("/boxoffice.notify.v1.SupportService/AnswerQuestion", true),
        ] {
            assert_eq!(table.lookup(path).unwrap().audited, audited, "{path}");
        }
    }
}
